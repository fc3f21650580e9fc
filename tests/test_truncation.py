"""Per-request truncation and token counts: parsing, the encoder's counts, and a mixed batch in the handler.

The handler runs with TorchServe's own ``Context`` on the tiny model with ``max_length`` 48, so a
30-word text (102 tokens with its instruction) is over the limit and a short one is not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from ts.context import RequestProcessor

from handler.encoder import InstructorEncoder
from handler.errors import InputTooLongError, InvalidInputError
from handler.request_parsing import WireFormat, parse_request
from handler.settings import HandlerSettings
from handler.torchserve_handler import InstructorHandler
from handler.truncation import length_error
from tests.conftest import BATCHING
from tests.test_handler import make_context
from toolkit.build.archive import build_archive

MAX_LENGTH = 48
SHORT_SETTINGS = HandlerSettings.from_mapping({"instruction_mode": "exclude", "max_length": MAX_LENGTH})
TITLE = "Represent the title:"
SHORT = "Hello world"
LONG = "word " * 30


def v2_body(pairs: list[list[str]], **extra: object) -> dict[str, object]:
    tensor = {"name": "pairs", "shape": [len(pairs), 2], "datatype": "BYTES", "data": pairs}
    return {"inputs": [tensor], **extra}


@pytest.fixture(scope="module")
def short_encoder(tiny_model_dir: Path) -> InstructorEncoder:
    return InstructorEncoder.from_folder(tiny_model_dir, SHORT_SETTINGS)


@pytest.fixture(scope="module")
def short_archive(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    store = tmp_path_factory.mktemp("short-store")
    return build_archive(tiny_model_dir, store, SHORT_SETTINGS, BATCHING, name="short", archive_format="no-archive")


@pytest.fixture(scope="module")
def handler(short_archive: Path) -> InstructorHandler:
    instance = InstructorHandler()
    instance.initialize(make_context(short_archive, 1))
    return instance


@pytest.mark.parametrize(
    ("body", "protocol"),
    [
        ({"inputs": [TITLE, SHORT], "truncate": False}, WireFormat.NATIVE),
        ({"inputs": [[TITLE, SHORT]], "truncate": False}, WireFormat.NATIVE),
        ({"input": [SHORT], "truncate": False}, WireFormat.OPENAI),
        ({"instances": [[TITLE, SHORT]], "parameters": {"truncate": False}}, WireFormat.KSERVE_V1),
        (v2_body([[TITLE, SHORT]], parameters={"truncate": False}), WireFormat.KSERVE_V2),
    ],
)
def test_every_body_style_takes_truncate(body: dict[str, object], protocol: WireFormat) -> None:
    request = parse_request({"body": body}, 8)
    assert request.protocol is protocol and request.truncate is False
    del body["parameters" if "parameters" in body else "truncate"]
    assert parse_request({"body": body}, 8).truncate is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [TITLE, SHORT], "truncate": "no"}, "'truncate' must be true or false, got string"),
        ({"inputs": [TITLE, SHORT], "return_token_counts": 1}, "'return_token_counts' must be true or false"),
        ({"input": "x", "truncate": None}, "'truncate' must be true or false, got null"),
        ({"instances": [[TITLE, SHORT]], "parameters": {"truncate": 0}}, "'parameters.truncate' must be true or"),
        ({"instances": [[TITLE, SHORT]], "parameters": []}, "'parameters' must be an object, got array"),
        (v2_body([[TITLE, SHORT]], parameters={"truncate": "false"}), "'parameters.truncate' must be true or false"),
    ],
)
def test_bad_truncate_flags_are_400_naming_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_request({"body": body}, 8)
    assert message in raised.value.message


def test_encoder_counts_tokens_before_and_after_truncation(
    short_encoder: InstructorEncoder, tiny_model_dir: Path
) -> None:
    short, long = short_encoder.tokenize([(TITLE, SHORT), (TITLE, LONG)])
    untruncated = short_encoder.tokenizer([TITLE + SHORT, TITLE + LONG.strip()], verbose=False)["input_ids"]
    assert (len(short.input_ids), short.full_length, short.truncated) == (
        len(untruncated[0]),
        len(untruncated[0]),
        False,
    )
    assert len(long.input_ids) == MAX_LENGTH and long.full_length == len(untruncated[1]) > MAX_LENGTH
    assert long.truncated
    # A pair of exactly max_length tokens is not truncated.
    exact = HandlerSettings.from_mapping({"instruction_mode": "exclude", "max_length": len(untruncated[0])})
    (row,) = InstructorEncoder.from_folder(tiny_model_dir, exact).tokenize([(TITLE, SHORT)])
    assert len(row.input_ids) == row.full_length == len(untruncated[0]) and not row.truncated


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": [TITLE, LONG], "truncate": False}, "inputs"),
        ({"inputs": [[TITLE, SHORT], [TITLE, LONG]], "truncate": False}, "inputs[1]"),
        ({"input": ["a", "b", LONG], "instruction": TITLE, "truncate": False}, "input[2]"),
        ({"instances": [[TITLE, SHORT], [TITLE, LONG]], "parameters": {"truncate": False}}, "instances[1]"),
        (v2_body([[TITLE, LONG]], parameters={"truncate": False}), "inputs[0].data[0]"),
    ],
)
def test_length_error_names_the_pair_its_tokens_and_the_limit(
    short_encoder: InstructorEncoder, body: dict[str, object], field: str
) -> None:
    request = parse_request({"body": body}, 8)
    rows = short_encoder.tokenize(request.pairs)
    error = length_error(request, rows, MAX_LENGTH)
    assert isinstance(error, InputTooLongError) and error.status == 413
    long_index = next(index for index, row in enumerate(rows) if row.truncated)
    assert error.message.startswith(f"{field} has {rows[long_index].full_length} tokens, more than the limit of 48")
    assert error.body() | {"message": ""} == {
        "code": 413,
        "type": "InputTooLongError",
        "message": "",
        "index": long_index,
        "tokens": rows[long_index].full_length,
        "max_length": MAX_LENGTH,
    }
    assert length_error(dataclasses.replace(request, truncate=True), rows, MAX_LENGTH) is None


def run_batch(handler: InstructorHandler, archive: Path, bodies: list[object]) -> list[tuple[int, object]]:
    context = make_context(archive, len(bodies))
    answers = handler.handle([{"body": body} for body in bodies], context)
    return [(context.get_response_status(i)[0], json.loads(answer)) for i, answer in enumerate(answers)]


def test_mixed_batch_refuses_only_the_long_request_that_asked_not_to_truncate(
    handler: InstructorHandler, short_archive: Path, short_encoder: InstructorEncoder
) -> None:
    bodies = [
        {"inputs": [[TITLE, SHORT], [TITLE, LONG]]},
        {"inputs": [[TITLE, SHORT], [TITLE, LONG]], "truncate": False},
        {"input": [SHORT, LONG], "instruction": TITLE},
        {"instances": [[TITLE, LONG]], "parameters": {"truncate": False}},
        v2_body([[TITLE, SHORT]], parameters={"truncate": False}),
        {"inputs": [TITLE, SHORT], "truncate": False, "return_token_counts": True},
    ]
    results = run_batch(handler, short_archive, bodies)
    rows = short_encoder.tokenize([(TITLE, SHORT), (TITLE, LONG)])
    expected = short_encoder.encode([(TITLE, SHORT), (TITLE, LONG)])
    short_tokens, long_tokens = len(rows[0].input_ids), rows[1].full_length

    status, native = results[0]
    assert status == 200 and torch.allclose(torch.tensor(native), expected, atol=1e-5)
    status, refused = results[1]
    assert status == 413 and (refused["index"], refused["tokens"], refused["max_length"]) == (1, long_tokens, 48)
    assert refused["message"].startswith(f"inputs[1] has {long_tokens} tokens, more than the limit of 48")
    status, openai = results[2]
    assert status == 200 and openai["usage"] == {
        "prompt_tokens": short_tokens + MAX_LENGTH,
        "total_tokens": short_tokens + MAX_LENGTH,
        "truncated_inputs": 1,
    }
    vectors = torch.tensor([item["embedding"] for item in openai["data"]])
    assert torch.allclose(vectors, expected, atol=1e-5)
    status, v1 = results[3]
    assert status == 413 and v1["message"].startswith(f"instances[0] has {long_tokens} tokens")
    status, v2 = results[4]
    assert status == 200 and torch.allclose(torch.tensor(v2["outputs"][0]["data"]), expected[0], atol=1e-5)
    status, counted = results[5]
    assert status == 200 and set(counted) == {"embeddings", "token_counts", "truncated"}
    assert counted["token_counts"] == [short_tokens] and counted["truncated"] == [False]
    assert torch.allclose(torch.tensor(counted["embeddings"]), expected[0], atol=1e-5)


def test_token_counts_are_opt_in_and_keep_the_default_shape(
    handler: InstructorHandler, short_archive: Path, short_encoder: InstructorEncoder
) -> None:
    pairs = [[TITLE, SHORT], [TITLE, LONG]]
    results = run_batch(handler, short_archive, [{"inputs": pairs}, {"inputs": pairs, "return_token_counts": True}])
    (status, plain), (status_counted, counted) = results
    assert status == status_counted == 200
    assert counted["embeddings"] == plain and isinstance(plain[0], list)
    rows = short_encoder.tokenize([tuple(pair) for pair in pairs])
    assert counted["token_counts"] == [len(rows[0].input_ids), MAX_LENGTH]
    assert counted["truncated"] == [False, True]


def test_all_requests_refused_never_runs_the_model(
    handler: InstructorHandler, short_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(_: object) -> None:
        raise AssertionError("the model ran for a batch with nothing to embed")

    monkeypatch.setattr(handler.encoder, "encode_rows_reported", must_not_run)
    results = run_batch(handler, short_archive, [{"inputs": [TITLE, LONG], "truncate": False}, {"inputs": 3}])
    assert [status for status, _ in results] == [413, 400]


def test_customized_describe_answers_settings_and_counts_nothing(
    handler: InstructorHandler, short_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: list[object] = []
    monkeypatch.setattr(handler.metrics, "record", recorded.append)
    context = make_context(short_archive, 1)
    context.request_processor = [RequestProcessor({"describe": "True"})]
    (answer,) = handler.handle([{}], context)
    assert json.loads(answer)["handler"]["max_length"] == MAX_LENGTH
    assert recorded == []
    run_batch(handler, short_archive, [{"inputs": [TITLE, SHORT]}])
    assert [stats.statuses for stats in recorded] == [[200]]
