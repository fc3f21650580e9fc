"""Answer bodies, in the protocol each request was sent in."""

from __future__ import annotations

from typing import Any

from handler.request_parsing import EmbeddingRequest, Protocol

V2_OUTPUT_NAME = "embedding"


def _native(request: EmbeddingRequest, vectors: list[list[float]], model_name: str) -> Any:
    return vectors[0] if request.single else vectors


def _kserve_v1(request: EmbeddingRequest, vectors: list[list[float]], model_name: str) -> Any:
    return {"predictions": vectors}


def _kserve_v2(request: EmbeddingRequest, vectors: list[list[float]], model_name: str) -> Any:
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


FORMATTERS = {Protocol.NATIVE: _native, Protocol.KSERVE_V1: _kserve_v1, Protocol.KSERVE_V2: _kserve_v2}


def success_body(request: EmbeddingRequest, vectors: list[list[float]], model_name: str) -> Any:
    """The JSON-ready answer for one request's vectors."""
    return FORMATTERS[request.protocol](request, vectors, model_name)
