"""Answer bodies, in the protocol each request was sent in."""

from __future__ import annotations

import base64
import dataclasses
import struct
from collections.abc import Sequence
from typing import Any

from handler.request_parsing import EmbeddingRequest, WireFormat

V2_OUTPUT_NAME = "embedding"


@dataclasses.dataclass(frozen=True)
class TokenUsage:
    """Per pair of one request: tokens the model read (after truncation) and whether it was cut."""

    counts: tuple[int, ...] = ()
    truncated: tuple[bool, ...] = ()

    @classmethod
    def of(cls, counts: Sequence[int], truncated: Sequence[bool]) -> TokenUsage:
        return cls(tuple(counts), tuple(truncated))

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def truncated_count(self) -> int:
        return sum(self.truncated)


def _openai_embedding(vector: list[float], encoding: str) -> list[float] | str:
    """A float list, or base64 of little-endian float32 (what OpenAI's SDKs decode)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def _openai(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, usage: TokenUsage) -> Any:
    encoding = request.option("encoding_format", "float")
    data = [
        {"object": "embedding", "index": index, "embedding": _openai_embedding(vector, encoding)}
        for index, vector in enumerate(vectors)
    ]
    usage_body = {"prompt_tokens": usage.total, "total_tokens": usage.total, "truncated_inputs": usage.truncated_count}
    return {"object": "list", "data": data, "model": request.option("model") or model_name, "usage": usage_body}


def _native(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, usage: TokenUsage) -> Any:
    embeddings = vectors[0] if request.single else vectors
    if not request.return_token_counts:
        return embeddings
    return {"embeddings": embeddings, "token_counts": list(usage.counts), "truncated": list(usage.truncated)}


def _kserve_v1(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, usage: TokenUsage) -> Any:
    return {"predictions": vectors}


def _kserve_v2(request: EmbeddingRequest, vectors: list[list[float]], model_name: str, usage: TokenUsage) -> Any:
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
    WireFormat.NATIVE: _native,
    WireFormat.KSERVE_V1: _kserve_v1,
    WireFormat.KSERVE_V2: _kserve_v2,
    WireFormat.OPENAI: _openai,
}


def success_body(
    request: EmbeddingRequest, vectors: list[list[float]], model_name: str, usage: TokenUsage | None = None
) -> Any:
    """The JSON-ready answer for one request's vectors; ``usage`` says what its pairs used."""
    return FORMATTERS[request.protocol](request, vectors, model_name, usage or TokenUsage())
