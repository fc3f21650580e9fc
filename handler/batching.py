"""A TorchServe dynamic batch as rows, rows as length-sorted micro-batches, and micro-batches as padded tensors.

A dynamic batch holds several client requests, each with one or more pairs. They are flattened
into one list of rows for the encoder and the vectors are split back by request, so every
request gets exactly its own answers in its own order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import torch

from handler.engines import engine_spec
from handler.request_parsing import EmbeddingRequest
from handler.settings import EngineName, HandlerSettings, Precision

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


@dataclasses.dataclass(frozen=True)
class MicroBatchLimits:
    """Bounds of one forward pass (see :func:`plan_micro_batches`) and where they came from."""

    rows: int
    tokens: int
    padding_pct: int
    source: str
    length_multiple: int = 1

    def padded_width(self, longest: int, max_length: int) -> int:
        """A micro-batch's tensor width: its longest row rounded up to ``length_multiple``, within ``max_length``.

        Engines cache work per input shape (OpenVINO's CPU plugin, oneDNN): a width seen before
        runs faster than a new one, and rounding makes widths repeat. The extra positions are
        masked out like any padding.
        """
        rounded = -(-longest // self.length_multiple) * self.length_multiple
        return max(longest, min(rounded, max_length))

    def describe(self) -> dict[str, int | str]:
        return dataclasses.asdict(self)


# Tuned for torch fp32 (docs/benchmarks/cpu-2core.md); torch bf16 measured no better with others. An
# engine's measured defaults per precision, where they differ: :attr:`handler.engines.EngineSpec.micro_batch`.
DEFAULT_LIMITS = (20, 32)


def micro_batch_limits(settings: HandlerSettings, engine: EngineName, precision: Precision) -> MicroBatchLimits:
    """The archive's own limits where it sets them, else the defaults measured for the engine and precision."""
    measured_limits = engine_spec(engine).micro_batch
    padding_pct, rows = measured_limits.get(precision, DEFAULT_LIMITS)
    measured = precision in measured_limits
    source = f"{engine.value} {precision.value} default" if measured else "default"
    if settings.micro_batch_padding_pct is not None or settings.micro_batch_rows is not None:
        source = "handler settings"
    return MicroBatchLimits(
        rows=settings.micro_batch_rows if settings.micro_batch_rows is not None else rows,
        tokens=settings.micro_batch_tokens,
        padding_pct=settings.micro_batch_padding_pct if settings.micro_batch_padding_pct is not None else padding_pct,
        source=source,
        length_multiple=settings.micro_batch_length_multiple,
    )


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


def padding_tokens(plan: Sequence[Sequence[int]], lengths: Sequence[int], widths: Sequence[int] | None = None) -> int:
    """Padded positions a plan computes: per micro-batch, rows x its width minus the real tokens.

    The width is the micro-batch's longest length unless ``widths`` gives it (one per micro-batch).
    """
    if widths is None:
        widths = [max(lengths[i] for i in indices) for indices in plan]
    return sum(
        len(indices) * width - sum(lengths[i] for i in indices) for indices, width in zip(plan, widths, strict=True)
    )


def pad_rows(rows: Sequence[Sequence[int]], width: int, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids right-padded to ``width``: the long ``input_ids`` and ``attention_mask`` an engine takes."""
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, ids in enumerate(rows):
        input_ids[index, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[index, : len(ids)] = 1
    return input_ids, attention_mask
