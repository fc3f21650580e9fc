"""The limit: the encoder alone (forward + pooling, no server, no tokenizer) on the server's batches."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from typing import Any

from handler.encoder import InstructorEncoder
from toolkit.build.workload import Pair


@dataclasses.dataclass(frozen=True)
class LimitResult:
    """Raw throughput for batches of ``batch_pairs`` pairs; per-batch times in seconds."""

    batch_pairs: int
    pairs: int
    elapsed_s: float
    batch_times_s: tuple[float, ...]

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def median_batch_ms(self) -> float:
        return statistics.median(self.batch_times_s) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "batch_pairs": self.batch_pairs,
            "pairs": self.pairs,
            "pairs_per_s": round(self.pairs_per_s, 3),
            "median_batch_ms": round(self.median_batch_ms, 1),
        }


def measure_limit(
    encoder: InstructorEncoder,
    pairs: Sequence[Pair],
    batch_pairs: int,
    duration_s: float,
    min_batches: int = 3,
    warm_up_s: float = 0.0,
) -> LimitResult:
    """Encode consecutive batches of ``batch_pairs`` pre-tokenized pairs for ``duration_s``.

    Tokenizing happens before the clock starts: the limit is the model's own speed, split
    into the same length-sorted micro-batches the handler uses. Two untimed rows warm up, then
    the batches run untimed for ``warm_up_s`` (engines cache per input shape: the timed run then
    starts again from the first batch and meets shapes a long-running server has seen).
    """
    rows = encoder.tokenize(pairs)
    batches = [
        [rows[(start + offset) % len(rows)] for offset in range(batch_pairs)]
        for start in range(0, len(rows), batch_pairs)
    ]
    encoder.encode_rows(batches[0][:2])
    warm_up_until = time.perf_counter() + warm_up_s
    for batch in batches:
        if time.perf_counter() >= warm_up_until:
            break
        encoder.encode_rows(batch)
    times: list[float] = []
    started = time.perf_counter()
    index = 0
    while len(times) < min_batches or time.perf_counter() - started < duration_s:
        begin = time.perf_counter()
        encoder.encode_rows(batches[index % len(batches)])
        times.append(time.perf_counter() - begin)
        index += 1
    return LimitResult(batch_pairs, batch_pairs * len(times), sum(times), tuple(times))
