"""A TorchServe dynamic batch as rows, and rows as length-sorted micro-batches.

A dynamic batch holds several client requests, each with one or more pairs. They are flattened
into one list of rows for the encoder and the vectors are split back by request, so every
request gets exactly its own answers in its own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from handler.request_parsing import EmbeddingRequest

T = TypeVar("T")


def flatten_pairs(requests: Sequence[EmbeddingRequest | None]) -> list[tuple[str, str]]:
    """All pairs of the valid requests, in request order. ``None`` marks a rejected request."""
    return [pair for request in requests if request is not None for pair in request.pairs]


def split_by_request(requests: Sequence[EmbeddingRequest | None], rows: Sequence[T]) -> list[list[T] | None]:
    """Give each valid request its slice of ``rows``; rejected requests get ``None``.

    Raises:
        ValueError: ``rows`` does not hold exactly one item per pair.
    """
    expected = sum(len(request.pairs) for request in requests if request is not None)
    if len(rows) != expected:
        raise ValueError(f"expected {expected} rows, got {len(rows)}")
    answers: list[list[T] | None] = []
    start = 0
    for request in requests:
        if request is None:
            answers.append(None)
            continue
        end = start + len(request.pairs)
        answers.append(list(rows[start:end]))
        start = end
    return answers


def plan_micro_batches(
    lengths: Sequence[int], max_rows: int, max_tokens: int, max_padding_pct: int = 100
) -> list[list[int]]:
    """Group row indices into micro-batches of similar length.

    Rows are sorted longest first; a micro-batch takes the next row while it has fewer than
    ``max_rows`` rows, ``rows x longest length`` stays within ``max_tokens``, and the row is at
    most ``max_padding_pct`` percent shorter than the micro-batch's longest (every padded
    position is computed and thrown away: a 16-token text padded to 256 costs 16 times its
    work). A single row always fits.
    """
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        fits = (
            len(current) < max_rows
            and (len(current) + 1) * longest <= max_tokens
            and (longest - lengths[index]) * 100 <= max_padding_pct * longest
        )
        if current and not fits:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padding_tokens(plan: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    """Padded positions a plan computes: per micro-batch, rows x its longest length minus the real tokens."""
    return sum(len(indices) * max(lengths[i] for i in indices) - sum(lengths[i] for i in indices) for indices in plan)
