"""Good and bad request bodies: the status and the message each one gets."""

from __future__ import annotations

import json

import pytest

from handler.errors import InvalidInputError, ServingError, TooManyInputsError, UnsupportedMediaTypeError
from handler.request_parsing import EmbeddingRequest, parse_request

LIMIT = 4


def body(value: object) -> dict[str, object]:
    """A TorchServe request entry carrying an already decoded JSON body."""
    return {"body": value}


GOOD = [
    (body({"inputs": ["Represent:", "text"]}), EmbeddingRequest((("Represent:", "text"),), single=True)),
    (body({"inputs": ["", "text"]}), EmbeddingRequest((("", "text"),), single=True)),
    (body({"inputs": [["a", "x"], ["b", "y"]]}), EmbeddingRequest((("a", "x"), ("b", "y")), single=False)),
    (body({"inputs": [["a", "x"]]}), EmbeddingRequest((("a", "x"),), single=False)),
    ({"body": b'{"inputs": ["i", "t"]}'}, EmbeddingRequest((("i", "t"),), single=True)),
    ({"data": bytearray(b'{"inputs": ["i", "t"]}')}, EmbeddingRequest((("i", "t"),), single=True)),
    ({"body": '{"inputs": ["i", "caf\\u00e9"]}'}, EmbeddingRequest((("i", "café"),), single=True)),
    (body({"inputs": [["a", "x"]] * LIMIT}), EmbeddingRequest((("a", "x"),) * LIMIT, single=False)),
]

BAD = [
    ({}, InvalidInputError, "request body is empty: send a JSON object with an 'inputs' field"),
    ({"body": b""}, InvalidInputError, "request body is empty: send a JSON object with an 'inputs' field"),
    ({"body": b"\xff\xfe"}, InvalidInputError, "request body is not valid UTF-8 (byte 0)"),
    (
        {"body": b"{not json"},
        InvalidInputError,
        "request body is not valid JSON: Expecting property name enclosed in double quotes at char 1",
    ),
    ({"body": b"[" * 100_000}, InvalidInputError, "request body is not valid JSON: nested too deeply"),
    (body([1, 2]), InvalidInputError, "request body must be a JSON object with an 'inputs' field, got array"),
    (body(42), InvalidInputError, "request body must be a JSON object with an 'inputs' field, got number"),
    ({"body": "plain text"}, InvalidInputError, "request body is not valid JSON: Expecting value at char 0"),
    (
        body({"imputs": ["a", "b"]}),
        InvalidInputError,
        "unknown field(s) ['imputs']: the body accepts only 'inputs', 'truncate', 'return_token_counts'",
    ),
    (body({}), InvalidInputError, "missing field 'inputs': send {\"inputs\": [instruction, text]}"),
    (
        body({"inputs": "text"}),
        InvalidInputError,
        "'inputs' must be an [instruction, text] pair or an array of pairs, got string",
    ),
    (
        body({"inputs": None}),
        InvalidInputError,
        "'inputs' must be an [instruction, text] pair or an array of pairs, got null",
    ),
    (body({"inputs": []}), InvalidInputError, "'inputs' must not be an empty array"),
    (
        body({"inputs": [1, "text"]}),
        InvalidInputError,
        "inputs[0] must be an instruction string or an [instruction, text] pair, got number",
    ),
    (body({"inputs": ["only one"]}), InvalidInputError, "inputs must have exactly 2 items [instruction, text], got 1"),
    (
        body({"inputs": ["a", "b", "c"]}),
        InvalidInputError,
        "inputs must have exactly 2 items [instruction, text], got 3",
    ),
    (body({"inputs": ["a", 5]}), InvalidInputError, "inputs[1] (text) must be a string, got number"),
    (body({"inputs": ["a", "   "]}), InvalidInputError, "inputs[1] (text) must not be empty or only whitespace"),
    (
        body({"inputs": [["a", "x"], "b"]}),
        InvalidInputError,
        "inputs[1] must be an [instruction, text] array, got string",
    ),
    (
        body({"inputs": [["a", "x"], ["b"]]}),
        InvalidInputError,
        "inputs[1] must have exactly 2 items [instruction, text], got 1",
    ),
    (
        body({"inputs": [["a", "x"], [None, "y"]]}),
        InvalidInputError,
        "inputs[1][0] (instruction) must be a string, got null",
    ),
    (
        body({"inputs": [["a", "x"], ["b", ["y"]]]}),
        InvalidInputError,
        "inputs[1][1] (text) must be a string, got array",
    ),
    (body({"inputs": [["a", True]]}), InvalidInputError, "inputs[0][1] (text) must be a string, got boolean"),
    (body({"inputs": [["a", float("nan")]]}), InvalidInputError, "inputs[0][1] (text) must be a string, got number"),
    (
        {"body": '{"inputs": ["i", "\\ud800"]}'},
        InvalidInputError,
        "inputs[1] (text) contains an unpaired UTF-16 surrogate",
    ),
    (
        body({"inputs": [["a", "x"]] * (LIMIT + 1)}),
        TooManyInputsError,
        "'inputs' has 5 pairs, more than the limit of 4 per request: split them over several requests",
    ),
    ({'{"inputs": ["a", "b"]}': b""}, UnsupportedMediaTypeError, None),
]


@pytest.mark.parametrize(("request_entry", "expected"), GOOD)
def test_good_bodies_parse(request_entry: dict[str, object], expected: EmbeddingRequest) -> None:
    assert parse_request(request_entry, LIMIT) == expected


@pytest.mark.parametrize(("request_entry", "error", "message"), BAD)
def test_bad_bodies_are_rejected_with_message(
    request_entry: dict[str, object], error: type[ServingError], message: str | None
) -> None:
    with pytest.raises(error) as raised:
        parse_request(request_entry, LIMIT)
    if message is not None:
        assert raised.value.message == message
    assert raised.value.body()["code"] == int(error.status)


def test_statuses_are_the_documented_ones() -> None:
    assert InvalidInputError.status == 400
    assert TooManyInputsError.status == 413
    assert UnsupportedMediaTypeError.status == 415


def test_error_body_is_json_without_trace() -> None:
    error = InvalidInputError("'inputs' must not be an empty array")
    encoded = json.dumps(error.body())
    assert json.loads(encoded) == {
        "code": 400,
        "type": "InvalidInputError",
        "message": "'inputs' must not be an empty array",
    }
