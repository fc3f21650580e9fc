"""Property-based fuzzing of request handling: a documented 4xx or a correct 200, nothing else.

At least 10,000 generated bodies in all (the counts are asserted at the end of the module):
decoded JSON of every shape, mutated JSON text, random bytes, and structural attacks (deep
nesting, huge strings, duplicated keys, NaN/Infinity, lone surrogates, control characters).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.errors import ServingError
from handler.request_parsing import EmbeddingRequest, parse_request
from handler.torchserve_handler import InstructorHandler
from tests.bodies import JSON_VALUES, SHAPED_BODIES, STRUCTURAL, VALID_PAIRS, mutate
from tests.test_handler import make_context

LIMIT = 128
DOCUMENTED_4XX = {400, 413, 415}
FUZZED: Counter[str] = Counter()


def fuzz(examples: int) -> settings:
    """Fixed example counts, no deadline, and the same examples on every run (CI stays stable)."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )


def check_parse(entry: dict[str, object]) -> None:
    """Parsing gives valid pairs or a documented ServingError; nothing else escapes."""
    try:
        request = parse_request(entry, LIMIT)
    except ServingError as err:
        assert int(err.status) in DOCUMENTED_4XX
        assert err.message and "Traceback" not in err.message
        return
    assert isinstance(request, EmbeddingRequest) and 1 <= len(request.pairs) <= LIMIT
    for instruction, text in request.pairs:
        assert isinstance(instruction, str) and isinstance(text, str) and text.strip()


@fuzz(4000)
@given(SHAPED_BODIES | JSON_VALUES)
def test_decoded_json_bodies(body: object) -> None:
    FUZZED["decoded"] += 1
    check_parse({"body": body})


@fuzz(2500)
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    FUZZED["bytes"] += 1
    check_parse({"body": raw})


@fuzz(2500)
@given(SHAPED_BODIES, st.integers(0, 2**32))
def test_mutated_json_text(body: dict[str, object], seed: int) -> None:
    FUZZED["mutated"] += 1
    text = json.dumps(body).encode("utf-8", "surrogatepass")
    check_parse({"body": mutate(text, random.Random(seed))})


@fuzz(1500)
@given(STRUCTURAL, st.sampled_from(["bytes", "text"]))
def test_structural_attacks(text: str, form: str) -> None:
    FUZZED["structural"] += 1
    check_parse({"body": text.encode("utf-8", "surrogatepass") if form == "bytes" else text})


@pytest.fixture(scope="module")
def live_handler(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[InstructorHandler, Path]:
    from tests.conftest import BATCHING, EXCLUDE
    from toolkit.archive import build_archive

    archive = build_archive(
        tiny_model_dir, tmp_path_factory.mktemp("fuzz"), EXCLUDE, BATCHING, archive_format="no-archive"
    )
    handler = InstructorHandler()
    handler.initialize(make_context(archive, 1))
    return handler, archive


@fuzz(300)
@given(st.lists(VALID_PAIRS | SHAPED_BODIES, min_size=1, max_size=5))
def test_handler_answers_every_request_of_a_batch(
    live_handler: tuple[InstructorHandler, Path], batch: list[object]
) -> None:
    """Through the real handler and tiny model: per-request 200 with the right vectors, or a 4xx."""
    FUZZED["handler"] += 1
    handler, archive = live_handler
    entries = [{"body": {"inputs": [list(p) for p in item]} if isinstance(item, list) else item} for item in batch]
    context = make_context(archive, len(entries))
    answers = handler.handle(entries, context)
    assert len(answers) == len(entries)
    for index, (entry, answer) in enumerate(zip(entries, answers, strict=True)):
        status = context.get_response_status(index)[0]
        decoded = json.loads(answer)
        if status != 200:
            assert status in DOCUMENTED_4XX, decoded
            continue
        request = parse_request(entry, LIMIT)
        expected = handler.encoder.encode(list(request.pairs))
        actual = torch.tensor([decoded] if request.single else decoded)
        assert torch.allclose(actual, expected, atol=1e-5)


def test_at_least_ten_thousand_bodies_were_fuzzed() -> None:
    """Runs last in this module: the generated bodies above add up to 10,000 or more."""
    parser_bodies = sum(count for kind, count in FUZZED.items() if kind != "handler")
    if parser_bodies == 0:
        pytest.skip("run together with the fuzz tests above")
    assert parser_bodies >= 10_000, FUZZED
