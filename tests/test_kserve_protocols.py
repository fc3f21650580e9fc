"""KServe v1 and v2 (Open Inference Protocol) bodies: parsing, errors and answer shapes."""

from __future__ import annotations

import pytest

from handler.errors import InvalidInputError, TooManyInputsError
from handler.request_parsing import EmbeddingRequest, Protocol, parse_request
from handler.responses import success_body

PAIRS = (("Represent the title:", "Hello"), ("", "World"))


def v2(data: object, shape: object = (2, 2), **extra: object) -> dict[str, object]:
    tensor = {"name": "pairs", "shape": list(shape) if isinstance(shape, tuple) else shape, "datatype": "BYTES"}
    return {"body": {"inputs": [tensor | {"data": data}], **extra}}


def test_v1_instances() -> None:
    request = parse_request({"body": {"instances": [list(pair) for pair in PAIRS]}}, 8)
    assert request == EmbeddingRequest(PAIRS, single=False, protocol=Protocol.KSERVE_V1)
    assert success_body(request, [[1.0, 2.0], [3.0, 4.0]], "m") == {"predictions": [[1.0, 2.0], [3.0, 4.0]]}


@pytest.mark.parametrize("data", [[list(pair) for pair in PAIRS], [value for pair in PAIRS for value in pair]])
def test_v2_pairs_tensor_nested_or_flat(data: list[object]) -> None:
    request = parse_request(v2(data, id="req-7"), 8)
    assert request == EmbeddingRequest(PAIRS, single=False, protocol=Protocol.KSERVE_V2, request_id="req-7")
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
