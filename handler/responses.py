"""Answer bodies, in the protocol each request was sent in."""

from __future__ import annotations

import base64
import struct
from typing import Any

from handler.request_parsing import EmbeddingRequest, Protocol

V2_OUTPUT_NAME = "embedding"


def _openai_embedding(vector: list[float], encoding: str) -> list[float] | str:
    """A float list, or base64 of little-endian float32 (what OpenAI's SDKs decode)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def _openai(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, tokens: int) -> Any:
    encoding = request.option("encoding_format", "float")
    data = [
        {"object": "embedding", "index": index, "embedding": _openai_embedding(vector, encoding)}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": request.option("model") or model_name, "usage": usage}


def _native(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, tokens: int) -> Any:
    return vectors[0] if request.single else vectors


def _kserve_v1(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, tokens: int) -> Any:
    return {"predictions": vectors}


def _kserve_v2(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, tokens: int) -> Any:
    dim = len(vectors[0]) if vectors else 0
    output = {
        "name": V2_OUTPUT_NAME,
        "shape": [len(vectors), dim],
        "datatype": "FP32",
        "data": [value for vector in vectors for value in vector],
    }
    body: dict[str, Any] = {"model_name": model_name, "outputs": [output]}
    if request.request_id is not None:
        body["id"] = request.request_id
    return body


FORMATTERS = {
    Protocol.NATIVE: _native,
    Protocol.KSERVE_V1: _kserve_v1,
    Protocol.KSERVE_V2: _kserve_v2,
    Protocol.OPENAI: _openai,
}


def success_body(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, tokens: int = 0) -> Any:
    """The JSON-ready answer for one request's vectors; ``tokens`` is what its pairs used."""
    return FORMATTERS[request.protocol](request, vectors, model_name, tokens)
