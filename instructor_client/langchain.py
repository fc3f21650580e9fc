"""LangChain ``Embeddings`` over the server, with separate query and document instructions.

The default instructions (:mod:`instructor_client.instructions`) are those of LangChain's
``HuggingFaceInstructEmbeddings``.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from instructor_client.client import InstructorClient
from instructor_client.instructions import DEFAULT_EMBED_INSTRUCTION, DEFAULT_QUERY_INSTRUCTION


class InstructorEmbeddings(Embeddings):
    """Documents and queries embedded with their own instructions, through an InstructorClient."""

    def __init__(
        self,
        client: InstructorClient,
        embed_instruction: str = DEFAULT_EMBED_INSTRUCTION,
        query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
    ) -> None:
        self.client = client
        self.embed_instruction = embed_instruction
        self.query_instruction = query_instruction

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.client.embed_texts(texts, self.embed_instruction)

    def embed_query(self, text: str) -> list[float]:
        return self.client.embed_texts([text], self.query_instruction)[0]
