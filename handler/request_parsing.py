"""Request bodies to validated ``[instruction, text]`` pairs. No torch here.

Two bodies are accepted, whatever the ``Content-Type``:

- ``{"inputs": [instruction, text]}``: one pair, answered with one flat vector.
- ``{"inputs": [[i1, t1], [i2, t2], ...]}``: a list of pairs, answered with a list of vectors.

Every rejection raises :class:`InvalidInputError` (400) or :class:`TooManyInputsError` (413)
with a message that names the field and the problem.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from handler.errors import InvalidInputError, TooManyInputsError, UnsupportedMediaTypeError

ACCEPTED_FIELDS = ("inputs",)


@dataclasses.dataclass(frozen=True)
class EmbeddingRequest:
    """One client request: its pairs, and whether the answer is one flat vector."""

    pairs: tuple[tuple[str, str], ...]
    single: bool


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for python_type, name in names.items():
        if type(value) is python_type:
            return name
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def body_of(request: dict[str, Any]) -> Any:
    """The raw body of one TorchServe request entry (``body`` or ``data``).

    A form-encoded POST (``Content-Type: application/x-www-form-urlencoded``, what ``curl -d``
    sends by default) arrives as form fields instead, with ``+`` and ``%`` already decoded
    away; it is refused rather than guessed at.
    """
    for key in ("body", "data"):
        if request.get(key) is not None:
            return request[key]
    if request:
        raise UnsupportedMediaTypeError(
            "the body arrived form-encoded (Content-Type: application/x-www-form-urlencoded, "
            "curl -d's default), which alters '+' and '%'; send it with "
            "Content-Type: application/json (curl --json or -H 'Content-Type: application/json')"
        )
    return None


def decode_body(raw: Any) -> Any:
    """Turn what TorchServe hands over into a decoded JSON value.

    TorchServe decodes ``application/json`` bodies itself, hands ``text/*`` bodies over as
    ``str`` and everything else as bytes, so all three are accepted here.
    """
    if raw is None or raw in (b"", ""):
        raise InvalidInputError("request body is empty: send a JSON object with an 'inputs' field")
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInputError(f"request body is not valid UTF-8 (byte {err.start})") from None
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"request body is not valid JSON: {err.msg} at char {err.pos}") from None
        except RecursionError:
            raise InvalidInputError("request body is not valid JSON: nested too deeply") from None
    return raw


def _checked_string(value: Any, field: str, role: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} ({role}) must be a string, got {json_type_name(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{field} ({role}) contains an unpaired UTF-16 surrogate") from None
    if not allow_empty and not value.strip():
        raise InvalidInputError(f"{field} ({role}) must not be empty or only whitespace")
    return value


def _parse_pair(value: Any, field: str) -> tuple[str, str]:
    if not isinstance(value, list):
        raise InvalidInputError(f"{field} must be an [instruction, text] array, got {json_type_name(value)}")
    if len(value) != 2:
        raise InvalidInputError(f"{field} must have exactly 2 items [instruction, text], got {len(value)}")
    instruction = _checked_string(value[0], f"{field}[0]", "instruction", allow_empty=True)
    text = _checked_string(value[1], f"{field}[1]", "text", allow_empty=False)
    return instruction, text


def parse_request(request: dict[str, Any], max_items: int) -> EmbeddingRequest:
    """Validate one entry of a TorchServe batch.

    Args:
        request: the entry as TorchServe hands it over (``body`` as bytes, str or decoded JSON).
        max_items: most pairs one request may carry.

    Raises:
        InvalidInputError: the body is malformed (400).
        UnsupportedMediaTypeError: the body was form-encoded (415).
        TooManyInputsError: more than ``max_items`` pairs (413).
    """
    body = decode_body(body_of(request))
    if not isinstance(body, dict):
        raise InvalidInputError(
            f"request body must be a JSON object with an 'inputs' field, got {json_type_name(body)}"
        )
    unknown = sorted(set(body) - set(ACCEPTED_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown field(s) {unknown}: the body accepts only 'inputs'")
    if "inputs" not in body:
        raise InvalidInputError("missing field 'inputs': send {\"inputs\": [instruction, text]}")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise InvalidInputError(
            f"'inputs' must be an [instruction, text] pair or an array of pairs, got {json_type_name(inputs)}"
        )
    if not inputs:
        raise InvalidInputError("'inputs' must not be an empty array")
    if isinstance(inputs[0], str):
        return EmbeddingRequest(pairs=(_parse_pair(inputs, "inputs"),), single=True)
    if not isinstance(inputs[0], list):
        raise InvalidInputError(
            f"inputs[0] must be an instruction string or an [instruction, text] pair, got {json_type_name(inputs[0])}"
        )
    if len(inputs) > max_items:
        raise TooManyInputsError(
            f"'inputs' has {len(inputs)} pairs, more than the limit of {max_items} per request: "
            "split them over several requests"
        )
    pairs = tuple(_parse_pair(item, f"inputs[{index}]") for index, item in enumerate(inputs))
    return EmbeddingRequest(pairs=pairs, single=False)
