"""Request bodies to validated ``[instruction, text]`` pairs. No torch here.

These bodies are accepted, whatever the ``Content-Type``:

- ``{"inputs": [instruction, text]}``: one pair, answered with one flat vector.
- ``{"inputs": [[i1, t1], [i2, t2], ...]}``: a list of pairs, answered with a list of vectors.
  ``"return_token_counts": true`` wraps that answer as ``{"embeddings": ..., "token_counts": [...],
  "truncated": [...]}``.
- KServe v1 ``{"instances": [[i1, t1], ...]}``, answered ``{"predictions": [...]}``.
- KServe v2 / Open Inference Protocol: one BYTES tensor ``pairs`` of shape ``[n, 2]``,
  answered with one FP32 tensor ``embedding`` of shape ``[n, dim]``.
- OpenAI embeddings ``{"input": str | [str], "instruction": str?, "encoding_format": "float" |
  "base64"}``, answered in OpenAI's list shape (``data[i].embedding``, ``index``, ``usage``).

Every style takes a per-request ``truncate`` (default true: INSTRUCTOR cuts inputs at
``max_length`` tokens): top-level in native and OpenAI bodies, in ``parameters`` for KServe v1/v2.
With ``false`` a longer pair is refused (413) instead of cut.

Every rejection raises :class:`InvalidInputError` (400) or :class:`TooManyInputsError` (413)
with a message that names the field and the problem.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from handler.errors import InvalidInputError, TooManyInputsError, UnsupportedMediaTypeError

V2_INPUT_NAME = "pairs"
NATIVE_FIELDS = ("inputs", "truncate", "return_token_counts")


class WireFormat(enum.StrEnum):
    """The body format a request was sent in (native, KServe v1/v2, OpenAI); the answer uses the same."""

    NATIVE = "native"
    KSERVE_V1 = "kserve-v1"
    KSERVE_V2 = "kserve-v2"
    OPENAI = "openai"


@dataclasses.dataclass(frozen=True)
class EmbeddingRequest:
    """One client request: its pairs, whether the answer is one flat vector, and its protocol."""

    pairs: tuple[tuple[str, str], ...]
    single: bool
    protocol: WireFormat = WireFormat.NATIVE
    request_id: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    truncate: bool = True
    return_token_counts: bool = False

    def option(self, name: str, default: str = "") -> str:
        """A protocol option of the request (e.g. OpenAI's ``encoding_format``)."""
        return dict(self.options).get(name, default)

    def pair_field(self, index: int) -> str:
        """How the request's body names its ``index``-th pair, for error messages."""
        if self.single:
            return "inputs"
        return PAIR_FIELDS[self.protocol].format(index=index)


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


def _optional_bool(container: dict[str, Any], name: str, field: str, default: bool) -> bool:
    value = container.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInputError(f"'{field}' must be true or false, got {json_type_name(value)}")
    return value


def _kserve_truncate(body: dict[str, Any]) -> bool:
    """``parameters.truncate`` of a KServe body; other parameters are ignored, as before."""
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInputError(f"'parameters' must be an object, got {json_type_name(parameters)}")
    return _optional_bool(parameters, "truncate", "parameters.truncate", True)


def _check_fields(body: dict[str, Any], accepted: tuple[str, ...], protocol: str) -> None:
    unknown = sorted(set(body) - set(accepted))
    if unknown:
        names = ", ".join(f"'{name}'" for name in accepted)
        raise InvalidInputError(f"unknown field(s) {unknown}: a {protocol} body accepts only {names}")


def _check_count(count: int, field: str, max_items: int) -> None:
    if count > max_items:
        raise TooManyInputsError(
            f"'{field}' has {count} pairs, more than the limit of {max_items} per request: "
            "split them over several requests"
        )


def _parse_native(body: dict[str, Any], max_items: int) -> EmbeddingRequest:
    unknown = sorted(set(body) - set(NATIVE_FIELDS))
    if unknown:
        names = ", ".join(f"'{name}'" for name in NATIVE_FIELDS)
        raise InvalidInputError(f"unknown field(s) {unknown}: the body accepts only {names}")
    if "inputs" not in body:
        raise InvalidInputError("missing field 'inputs': send {\"inputs\": [instruction, text]}")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise InvalidInputError(
            f"'inputs' must be an [instruction, text] pair or an array of pairs, got {json_type_name(inputs)}"
        )
    if not inputs:
        raise InvalidInputError("'inputs' must not be an empty array")
    flags = {
        "truncate": _optional_bool(body, "truncate", "truncate", True),
        "return_token_counts": _optional_bool(body, "return_token_counts", "return_token_counts", False),
    }
    if isinstance(inputs[0], str):
        return EmbeddingRequest(pairs=(_parse_pair(inputs, "inputs"),), single=True, **flags)
    if not isinstance(inputs[0], list):
        raise InvalidInputError(
            f"inputs[0] must be an instruction string or an [instruction, text] pair, got {json_type_name(inputs[0])}"
        )
    _check_count(len(inputs), "inputs", max_items)
    pairs = tuple(_parse_pair(item, f"inputs[{index}]") for index, item in enumerate(inputs))
    return EmbeddingRequest(pairs=pairs, single=False, **flags)


def _parse_kserve_v1(body: dict[str, Any], max_items: int) -> EmbeddingRequest:
    """KServe v1: ``{"instances": [[instruction, text], ...]}``."""
    _check_fields(body, ("instances", "parameters"), "KServe v1")
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInputError(f"'instances' must be a non-empty array of pairs, got {json_type_name(instances)}")
    _check_count(len(instances), "instances", max_items)
    truncate = _kserve_truncate(body)
    pairs = tuple(_parse_pair(item, f"instances[{index}]") for index, item in enumerate(instances))
    return EmbeddingRequest(pairs=pairs, single=False, protocol=WireFormat.KSERVE_V1, truncate=truncate)


def _v2_tensor_rows(tensor: Any, max_items: int) -> list[Any]:
    if not isinstance(tensor, dict):
        raise InvalidInputError(f"inputs[0] must be a tensor object, got {json_type_name(tensor)}")
    if tensor.get("name") != V2_INPUT_NAME or tensor.get("datatype") != "BYTES":
        raise InvalidInputError(
            f"inputs[0] must be the BYTES tensor named '{V2_INPUT_NAME}' (got name {tensor.get('name')!r}, "
            f"datatype {tensor.get('datatype')!r})"
        )
    shape, data = tensor.get("shape"), tensor.get("data")
    # JSON true/false decode to bool, a subclass of int, and 2.0 == 2: only real integers are dimensions.
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(dim) is int for dim in shape) and shape[1] == 2):
        raise InvalidInputError(f"inputs[0].shape must be [n, 2] (n pairs), got {shape!r}")
    if not isinstance(data, list):
        raise InvalidInputError(f"inputs[0].data must be an array, got {json_type_name(data)}")
    _check_count(shape[0], "inputs[0]", max_items)
    if shape[0] < 1:
        raise InvalidInputError("inputs[0].shape must hold at least one pair")
    rows = data if data and isinstance(data[0], list) else [data[i : i + 2] for i in range(0, len(data), 2)]
    if len(rows) != shape[0] or (data and not isinstance(data[0], list) and len(data) != 2 * shape[0]):
        raise InvalidInputError(f"inputs[0].data does not match shape {shape}: got {len(data)} items")
    return rows


def _parse_kserve_v2(body: dict[str, Any], max_items: int) -> EmbeddingRequest:
    """KServe v2 (Open Inference Protocol): one BYTES tensor ``pairs`` of shape ``[n, 2]``."""
    _check_fields(body, ("id", "inputs", "parameters", "outputs"), "KServe v2")
    inputs = body["inputs"]
    if len(inputs) != 1:
        raise InvalidInputError(f"'inputs' must hold exactly one tensor named '{V2_INPUT_NAME}', got {len(inputs)}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"'id' must be a string, got {json_type_name(request_id)}")
    truncate = _kserve_truncate(body)
    rows = _v2_tensor_rows(inputs[0], max_items)
    pairs = tuple(_parse_pair(row, f"inputs[0].data[{index}]") for index, row in enumerate(rows))
    return EmbeddingRequest(
        pairs=pairs, single=False, protocol=WireFormat.KSERVE_V2, request_id=request_id, truncate=truncate
    )


OPENAI_ENCODINGS = ("float", "base64")
OPENAI_FIELDS = ("input", "instruction", "encoding_format", "model", "user", "dimensions", "truncate")


def _parse_openai(body: dict[str, Any], max_items: int) -> EmbeddingRequest:
    """OpenAI embeddings: ``{"input": str | [str], "instruction"?: str, "encoding_format"?: ...}``."""
    _check_fields(body, OPENAI_FIELDS, "OpenAI")
    if "dimensions" in body:
        raise InvalidInputError("'dimensions' is not supported: the model's vectors have a fixed size")
    instruction = _checked_string(body.get("instruction", ""), "instruction", "instruction", allow_empty=True)
    encoding = body.get("encoding_format", "float")
    if encoding not in OPENAI_ENCODINGS:
        raise InvalidInputError(f"'encoding_format' must be one of {list(OPENAI_ENCODINGS)}, got {encoding!r}")
    model = body.get("model", "")
    if not isinstance(model, str):
        raise InvalidInputError(f"'model' must be a string, got {json_type_name(model)}")
    texts = body["input"]
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise InvalidInputError(
            f"'input' must be a string or a non-empty array of strings, got {json_type_name(texts)}"
        )
    if not isinstance(texts[0], str):
        raise InvalidInputError("'input' must hold text: token arrays are not supported")
    _check_count(len(texts), "input", max_items)
    pairs = tuple(
        (instruction, _checked_string(text, f"input[{index}]", "text", allow_empty=False))
        for index, text in enumerate(texts)
    )
    options = (("encoding_format", encoding), ("model", model))
    truncate = _optional_bool(body, "truncate", "truncate", True)
    return EmbeddingRequest(pairs=pairs, single=False, protocol=WireFormat.OPENAI, options=options, truncate=truncate)


def _protocol_of(body: dict[str, Any]) -> WireFormat:
    if "input" in body and "inputs" not in body:
        return WireFormat.OPENAI
    if "instances" in body:
        return WireFormat.KSERVE_V1
    inputs = body.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return WireFormat.KSERVE_V2
    return WireFormat.NATIVE


PAIR_FIELDS = {
    WireFormat.NATIVE: "inputs[{index}]",
    WireFormat.KSERVE_V1: "instances[{index}]",
    WireFormat.KSERVE_V2: "inputs[0].data[{index}]",
    WireFormat.OPENAI: "input[{index}]",
}

PARSERS = {
    WireFormat.NATIVE: _parse_native,
    WireFormat.KSERVE_V1: _parse_kserve_v1,
    WireFormat.KSERVE_V2: _parse_kserve_v2,
    WireFormat.OPENAI: _parse_openai,
}


def parse_request(request: dict[str, Any], max_items: int) -> EmbeddingRequest:
    """Validate one entry of a TorchServe batch, in whichever protocol its body speaks.

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
    return PARSERS[_protocol_of(body)](body, max_items)
