"""Per-request truncation: ``truncate: false`` refuses a pair longer than ``max_length`` tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from handler.errors import InputTooLongError
from handler.request_parsing import EmbeddingRequest

if TYPE_CHECKING:
    from handler.encoder import TokenizedRow


def length_error(request: EmbeddingRequest, rows: Sequence[TokenizedRow], max_length: int) -> InputTooLongError | None:
    """The 413 for the request's first pair that was cut, when it asked not to truncate; else ``None``."""
    if request.truncate:
        return None
    for index, row in enumerate(rows):
        if row.truncated:
            return InputTooLongError(request.pair_field(index), index, row.full_length, max_length)
    return None
