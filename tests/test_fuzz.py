"""Property-based fuzzing of request handling: a documented 4xx or a correct 200, nothing else.

About 12,500 generated bodies through the parser: decoded JSON of every shape, mutated JSON
text, random bytes, structural attacks (deep nesting, huge strings, duplicated keys,
NaN/Infinity, lone surrogates, control characters), and bodies of every protocol (native,
KServe v1, KServe v2, OpenAI) built valid and then kept, changed structurally or mutated as
bytes. Each test counts its own examples and asserts them, so no test depends on another
having run; the protocol tests also assert how many bodies of each protocol reached the encoder.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.errors import ServingError
from handler.request_parsing import EmbeddingRequest, WireFormat, parse_request
from handler.torchserve_handler import InstructorHandler
from tests.bodies import (
    BODY_FORMS,
    JSON_VALUES,
    PAIRS_AND_RANDOM,
    PROTOCOL_CASES,
    SHAPED_BODIES,
    STRUCTURAL,
    VALID_PAIRS,
    answer_vectors,
    expected_pairs,
    mutate,
    shaped_protocol_body,
)
from tests.test_handler import make_context

LIMIT = 128
PROTOCOL_ORDER = list(WireFormat)
DOCUMENTED_4XX = {400, 413, 415}


def fuzz(examples: int) -> settings:
    """Fixed example counts, no deadline, and the same examples on every run (CI stays stable)."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )


def check_parse(entry: dict[str, object]) -> EmbeddingRequest | None:
    """Parsing gives valid pairs or a documented ServingError (then ``None``); nothing else escapes."""
    try:
        request = parse_request(entry, LIMIT)
    except ServingError as err:
        assert int(err.status) in DOCUMENTED_4XX
        assert err.message and "Traceback" not in err.message
        return None
    assert isinstance(request, EmbeddingRequest) and 1 <= len(request.pairs) <= LIMIT
    for instruction, text in request.pairs:
        assert isinstance(instruction, str) and isinstance(text, str) and text.strip()
    return request


def run_counted(examples: int, strategy: st.SearchStrategy, check: Callable[..., None]) -> int:
    """Run ``check`` on ``examples`` generated values; return how many it saw."""
    seen = Counter()

    @fuzz(examples)
    @given(strategy)
    def run(value: object) -> None:
        seen["examples"] += 1
        check(value)

    run()
    return seen["examples"]


def test_decoded_json_bodies() -> None:
    assert run_counted(4000, SHAPED_BODIES | JSON_VALUES, lambda body: check_parse({"body": body})) >= 4000


def test_random_bytes() -> None:
    assert run_counted(2500, st.binary(max_size=300), lambda raw: check_parse({"body": raw})) >= 2500


def test_mutated_json_text() -> None:
    def check(case: tuple[dict[str, object], int]) -> None:
        body, seed = case
        text = json.dumps(body).encode("utf-8", "surrogatepass")
        check_parse({"body": mutate(text, random.Random(seed))})

    assert run_counted(2500, st.tuples(SHAPED_BODIES, st.integers(0, 2**32)), check) >= 2500


def test_structural_attacks() -> None:
    def check(case: tuple[str, str]) -> None:
        text, form = case
        check_parse({"body": text.encode("utf-8", "surrogatepass") if form == "bytes" else text})

    assert run_counted(1500, st.tuples(STRUCTURAL, st.sampled_from(["bytes", "text"])), check) >= 1500


def test_every_protocol_is_fuzzed_past_its_first_check() -> None:
    """Valid bodies of each protocol reach the encoder with their exact pairs; changed ones get a 4xx or valid pairs.

    The refusals of each protocol's changed bodies must come from many different checks (distinct
    messages, numbers and quoted values stripped), not from one check at the door.
    """
    reached: Counter[tuple[WireFormat, str]] = Counter()
    refusals: dict[WireFormat, set[str]] = {protocol: set() for protocol in WireFormat}

    turns = Counter()

    def check(case: tuple[list[tuple[str, str]], random.Random]) -> None:
        # Protocol and form taken in turn, so each protocol gets the same share of each form.
        pairs, rng = case
        turn = turns["n"]
        turns["n"] += 1
        protocol, form = PROTOCOL_ORDER[turn % 4], BODY_FORMS[(turn // 4) % 3]
        entry = {"body": shaped_protocol_body(protocol, pairs, form, rng)}
        request = check_parse(entry)
        if form == "valid":
            if request is None:  # only a lone UTF-16 surrogate may stop a valid body
                assert any(_has_surrogate(value) for pair in pairs for value in pair)
            else:
                assert request.protocol is protocol and request.pairs == expected_pairs(protocol, pairs)
        if request is not None:
            reached[request.protocol, form] += 1
        elif form == "structural":
            with pytest.raises(ServingError) as raised:
                parse_request(entry, LIMIT)
            refusals[protocol].add(re.sub(r"\d+|'[^']*'|\[[^]]*\]", "_", raised.value.message))

    assert run_counted(2000, PAIRS_AND_RANDOM, check) >= 2000
    for protocol in WireFormat:
        # 167 valid bodies each; only those with a lone surrogate may be refused.
        assert reached[protocol, "valid"] >= 150, (protocol, reached)
        assert len(refusals[protocol]) >= 10, (protocol, refusals[protocol])


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


@pytest.fixture(scope="module")
def live_handler(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[InstructorHandler, Path]:
    from tests.conftest import BATCHING, EXCLUDE
    from toolkit.build.archive import build_archive

    archive = build_archive(
        tiny_model_dir, tmp_path_factory.mktemp("fuzz"), EXCLUDE, BATCHING, archive_format="no-archive"
    )
    handler = InstructorHandler()
    handler.initialize(make_context(archive, 1))
    return handler, archive


def test_handler_answers_every_request_of_a_batch(live_handler: tuple[InstructorHandler, Path]) -> None:
    """Through the real handler and tiny model: per-request 200 with the right vectors, or a 4xx.

    A batch mixes native pairs, generated native bodies and bodies of every protocol; the
    requests of each protocol that reached the encoder are counted and asserted.
    """
    handler, archive = live_handler
    encoded: Counter[WireFormat] = Counter()
    turns = Counter()

    def check(case: tuple[list[object], tuple[list[tuple[str, str]], random.Random]]) -> None:
        generated, (pairs, rng) = case
        # Every batch also carries one valid body of each protocol in turn (75 each in all).
        protocol = PROTOCOL_ORDER[turns["n"] % 4]
        turns["n"] += 1
        batch = [*generated, shaped_protocol_body(protocol, pairs, "valid", rng)]
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
            assert torch.allclose(torch.tensor(answer_vectors(request, decoded)), expected, atol=1e-5)
            encoded[request.protocol] += 1

    protocol_items = st.tuples(PROTOCOL_CASES).map(lambda case: shaped_protocol_body(*case[0]))
    generated = st.lists(VALID_PAIRS | SHAPED_BODIES | protocol_items, max_size=4)
    assert run_counted(300, st.tuples(generated, PAIRS_AND_RANDOM), check) >= 300
    for protocol in WireFormat:
        assert encoded[protocol] >= 60, encoded
