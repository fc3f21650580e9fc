"""A Chroma embedding function over the server: document instruction on add, query instruction on query."""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space

from instructor_client.client import InstructorClient
from instructor_client.instructions import DEFAULT_EMBED_INSTRUCTION, DEFAULT_QUERY_INSTRUCTION


class InstructorEmbeddingFunction(EmbeddingFunction[Documents]):
    """``collection.add(documents=...)`` embeds with ``embed_instruction``; ``collection.query(query_texts=...)``
    with ``query_instruction`` (Chroma calls :meth:`embed_query` for queries)."""

    def __init__(
        self,
        client: InstructorClient,
        embed_instruction: str = DEFAULT_EMBED_INSTRUCTION,
        query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
    ) -> None:
        self.client = client
        self.embed_instruction = embed_instruction
        self.query_instruction = query_instruction

    def __call__(self, input: Documents) -> Embeddings:
        return self.client.embed_texts(list(input), self.embed_instruction)

    def embed_query(self, input: Documents) -> Embeddings:
        return self.client.embed_texts(list(input), self.query_instruction)

    @staticmethod
    def name() -> str:
        return "instructor-torchserve"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        """What Chroma persists with the collection (never the token)."""
        return {
            "endpoint": self.client.endpoint,
            "embed_instruction": self.embed_instruction,
            "query_instruction": self.query_instruction,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> InstructorEmbeddingFunction:
        url, _, model = config["endpoint"].rpartition("/predictions/")
        return InstructorEmbeddingFunction(
            InstructorClient(url, model), config["embed_instruction"], config["query_instruction"]
        )
