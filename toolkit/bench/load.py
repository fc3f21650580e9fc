"""Closed-loop HTTP load: N clients, each sending its next request when the last one returns."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import requests


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What one load run saw; latencies are per request, in seconds."""

    requests: int
    pairs: int
    failures: int
    elapsed_s: float
    latencies_s: tuple[float, ...]

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, percentile: float) -> float:
        """A latency percentile (0-100) in milliseconds, NaN without requests."""
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), percentile) * 1000)

    def merged(self, other: LoadResult) -> LoadResult:
        """Two runs of the same workload as one (``self`` itself when ``other`` is it)."""
        if other is self:
            return self
        return LoadResult(
            self.requests + other.requests,
            self.pairs + other.pairs,
            self.failures + other.failures,
            self.elapsed_s + other.elapsed_s,
            self.latencies_s + other.latencies_s,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "pairs": self.pairs,
            "failures": self.failures,
            "elapsed_s": round(self.elapsed_s, 2),
            "pairs_per_s": round(self.pairs_per_s, 3),
            "p50_ms": round(self.latency_ms(50), 1),
            "p99_ms": round(self.latency_ms(99), 1),
        }


def vectors_in(payload: Any) -> int:
    """How many vectors a native answer holds (a list of vectors, or one vector)."""
    if isinstance(payload, list) and payload and isinstance(payload[0], list):
        return len(payload)
    return 1 if isinstance(payload, list) and payload else 0


def run_load(
    url: str,
    headers: dict[str, str],
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    duration_s: float,
    min_requests: int,
    timeout_s: float = 900,
) -> LoadResult:
    """Send ``bodies`` (cycling) from ``concurrency`` clients for ``duration_s`` and at least ``min_requests``.

    A request counts as failed unless it is answered 200 with one vector per pair sent.
    Throughput is pairs answered correctly over the time from the first send to the last answer.
    """
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    totals = {"requests": 0, "pairs": 0, "failures": 0}
    started = time.perf_counter()
    deadline = started + duration_s

    def client() -> None:
        with requests.Session() as session:
            while True:
                index = next(counter)
                if index >= min_requests and time.perf_counter() >= deadline:
                    return
                body = bodies[index % len(bodies)]
                sent = time.perf_counter()
                try:
                    response = session.post(url, json=body, headers=headers, timeout=timeout_s)
                    ok = response.status_code == 200 and vectors_in(response.json()) == len(body["inputs"])
                except (requests.RequestException, ValueError):
                    ok = False
                took = time.perf_counter() - sent
                with lock:
                    totals["requests"] += 1
                    if ok:
                        latencies.append(took)
                        totals["pairs"] += len(body["inputs"])
                    else:
                        totals["failures"] += 1

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    elapsed = time.perf_counter() - started
    return LoadResult(totals["requests"], totals["pairs"], totals["failures"], elapsed, tuple(latencies))
