"""Long documents cut into chunks of at most N tokens, with an overlap; each chunk keeps its offsets.

Tokens are counted with the model's own tokenizer when a tokenizer folder is given (the served
model's folder), else as whitespace-separated words. A chunk's ``start``/``end`` are character
offsets into its document's text, so a chunk can always be traced back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from toolkit.corpus.reading import Document

WORD = re.compile(r"\S+")
Spans = Callable[[str], Sequence[tuple[int, int]]]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One row to embed: its document, its number within it, its character span and its text."""

    id: str
    chunk: int
    start: int
    end: int
    text: object
    instruction: str | None


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words."""
    return [match.span() for match in WORD.finditer(text)]


def tokenizer_spans(folder: Path) -> Spans:
    """Character spans of the tokens of the tokenizer in ``folder`` (special tokens left out)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))

    def spans(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(start, end) for start, end in encoded["offset_mapping"] if end > start]

    return spans


@dataclasses.dataclass(frozen=True)
class Splitter:
    """``max_tokens`` None: one chunk per document, as it is."""

    max_tokens: int | None = None
    overlap: int = 0
    spans: Spans = word_spans

    def __post_init__(self) -> None:
        if self.max_tokens is not None and not 0 <= self.overlap < self.max_tokens:
            raise ValueError(f"overlap must be at least 0 and below the chunk size, got {self.overlap}")

    def split(self, document: Document) -> Iterator[Chunk]:
        text = document.text
        if self.max_tokens is None or not isinstance(text, str):
            yield Chunk(document.id, 0, 0, len(text) if isinstance(text, str) else 0, text, document.instruction)
            return
        spans = self.spans(text)
        if len(spans) <= self.max_tokens:
            yield Chunk(document.id, 0, 0, len(text), text, document.instruction)
            return
        step = self.max_tokens - self.overlap
        for number, first in enumerate(range(0, len(spans) - self.overlap, step)):
            window = spans[first : first + self.max_tokens]
            start, end = window[0][0], window[-1][1]
            yield Chunk(document.id, number, start, end, text[start:end], document.instruction)
