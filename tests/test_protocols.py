"""KServe v1, v2 (Open Inference Protocol) and OpenAI bodies: parsing, errors and answer shapes."""

from __future__ import annotations

import pytest

from handler.errors import InvalidInputError, TooManyInputsError
from handler.request_parsing import EmbeddingRequest, WireFormat, parse_request
from handler.responses import TokenUsage, success_body

PAIRS = (("Represent the title:", "Hello"), ("", "World"))


def v2(data: object, shape: object = (2, 2), **extra: object) -> dict[str, object]:
    tensor = {"name": "pairs", "shape": list(shape) if isinstance(shape, tuple) else shape, "datatype": "BYTES"}
    return {"body": {"inputs": [tensor | {"data": data}], **extra}}


def test_v1_instances() -> None:
    request = parse_request({"body": {"instances": [list(pair) for pair in PAIRS]}}, 8)
    assert request == EmbeddingRequest(PAIRS, single=False, protocol=WireFormat.KSERVE_V1)
    assert success_body(request, [[1.0, 2.0], [3.0, 4.0]], "m") == {"predictions": [[1.0, 2.0], [3.0, 4.0]]}


@pytest.mark.parametrize("data", [[list(pair) for pair in PAIRS], [value for pair in PAIRS for value in pair]])
def test_v2_pairs_tensor_nested_or_flat(data: list[object]) -> None:
    request = parse_request(v2(data, id="req-7"), 8)
    assert request == EmbeddingRequest(PAIRS, single=False, protocol=WireFormat.KSERVE_V2, request_id="req-7")
    assert success_body(request, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "instructor") == {
        "model_name": "instructor",
        "id": "req-7",
        "outputs": [{"name": "embedding", "shape": [2, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}],
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"body": {"instances": []}}, "'instances' must be a non-empty array of pairs, got array"),
        ({"body": {"instances": [["a", 1]]}}, "instances[0][1] (text) must be a string, got number"),
        ({"body": {"instances": [["a", "b"]], "x": 1}}, "unknown field(s) ['x']: a KServe v1 body accepts only"),
        (v2([["a", "b"]], shape=(1, 3)), "inputs[0].shape must be [n, 2] (n pairs), got [1, 3]"),
        (v2([["a", "b"]], shape=(2, 2)), "inputs[0].data does not match shape [2, 2]: got 1 items"),
        (v2(["a", "b", "c"], shape=(2, 2)), "inputs[0].data does not match shape [2, 2]: got 3 items"),
        (v2([["a", None]], shape=(1, 2)), "inputs[0].data[0][1] (text) must be a string, got null"),
        (
            {"body": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}},
            "inputs[0] must be the BYTES tensor named 'pairs'",
        ),
        ({"body": {"inputs": [{"name": "pairs"}, {"name": "other"}]}}, "'inputs' must hold exactly one tensor"),
        (v2([["a", "b"]], shape=(1, 2), id=5), "'id' must be a string, got number"),
        (v2("ab", shape=(1, 2)), "inputs[0].data must be an array, got string"),
        (v2({"0": ["a", "b"]}, shape=(1, 2)), "inputs[0].data must be an array, got object"),
        (v2(None, shape=(1, 2)), "inputs[0].data must be an array, got null"),
        (v2([], shape=(0, 2)), "inputs[0].shape must hold at least one pair"),
        (v2([], shape=(-1, 2)), "inputs[0].shape must hold at least one pair"),
        # JSON true decodes to a Python bool (an int subclass), 2.0 == 2: neither is a dimension.
        (v2([["a", "b"]], shape=(True, 2)), "inputs[0].shape must be [n, 2] (n pairs), got [True, 2]"),
        (v2(["a", "b"], shape=(1, 2.0)), "inputs[0].shape must be [n, 2] (n pairs), got [1, 2.0]"),
        (v2([["a", "b"]], shape=(1.0, 2)), "inputs[0].shape must be [n, 2] (n pairs), got [1.0, 2]"),
        (v2([["a", "b"]], shape=(1, True)), "inputs[0].shape must be [n, 2] (n pairs), got [1, True]"),
    ],
)
def test_malformed_kserve_bodies_name_the_field(entry: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_request(entry, 8)
    assert message in raised.value.message


def test_limits_apply_to_every_protocol() -> None:
    with pytest.raises(TooManyInputsError):
        parse_request({"body": {"instances": [["a", "b"]] * 9}}, 8)
    with pytest.raises(TooManyInputsError):
        parse_request(v2([["a", "b"]] * 9, shape=(9, 2)), 8)


def test_openai_body_with_instruction_and_base64() -> None:
    import base64

    import numpy as np

    request = parse_request(
        {"body": {"input": ["Hello", "World"], "instruction": "Represent:", "encoding_format": "base64", "model": "m"}},
        8,
    )
    assert request.pairs == (("Represent:", "Hello"), ("Represent:", "World"))
    assert request.protocol is WireFormat.OPENAI
    body = success_body(request, [[0.5, -1.25], [2.0, 0.0]], "instructor", TokenUsage.of([5, 2], [True, False]))
    assert body["object"] == "list" and body["model"] == "m"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7, "truncated_inputs": 1}
    assert [item["index"] for item in body["data"]] == [0, 1]
    decoded = np.frombuffer(base64.b64decode(body["data"][1]["embedding"]), dtype="<f4")
    assert decoded.tolist() == [2.0, 0.0]


def test_openai_single_string_and_float_default() -> None:
    request = parse_request({"body": {"input": "Hello"}}, 8)
    assert request.pairs == (("", "Hello"),)
    body = success_body(request, [[0.5, 1.0]], "instructor", TokenUsage.of([3], [False]))
    assert body["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, 1.0]}]
    assert body["model"] == "instructor"


@pytest.mark.parametrize(
    ("openai_body", "message"),
    [
        ({"input": []}, "'input' must be a string or a non-empty array of strings"),
        ({"input": [[1, 2, 3]]}, "token arrays are not supported"),
        ({"input": ["a", ""]}, "input[1] (text) must not be empty"),
        ({"input": "a", "encoding_format": "int8"}, "'encoding_format' must be one of ['float', 'base64']"),
        ({"input": "a", "dimensions": 256}, "'dimensions' is not supported"),
        ({"input": "a", "instruction": 3}, "instruction (instruction) must be a string, got number"),
        ({"input": "a", "temperature": 1}, "unknown field(s) ['temperature']: a OpenAI body accepts only"),
    ],
)
def test_malformed_openai_bodies(openai_body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        parse_request({"body": openai_body}, 8)
    assert message in raised.value.message


def test_openai_limit() -> None:
    with pytest.raises(TooManyInputsError):
        parse_request({"body": {"input": ["a"] * 9}}, 8)
