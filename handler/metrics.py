"""The handler's own metrics, sent through TorchServe's metrics API to its Prometheus endpoint.

Each worker writes ``[METRICS]`` lines that TorchServe's frontend turns into Prometheus series on
the metrics port (``/metrics``); the frontend adds a ``Hostname`` label. config.properties sets
``model_metrics_auto_detect=true`` so these series need no entry in TorchServe's metrics YAML.
Names, labels and meanings are listed in :data:`METRICS` (and in docs/metrics.md).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ts.metrics.metric_type_enum import MetricTypes

if TYPE_CHECKING:
    from handler.encoder import EncodeReport

MODEL = "ModelName"
STATUS = "Status"


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One series family: Prometheus name, TorchServe unit, type, extra labels and meaning."""

    name: str
    unit: str
    kind: MetricTypes
    help: str
    labels: tuple[str, ...] = (MODEL,)


REQUESTS = MetricSpec(
    "instructor_requests_total", "count", MetricTypes.COUNTER, "requests answered, by HTTP status", (MODEL, STATUS)
)
PAIRS = MetricSpec("instructor_pairs_total", "count", MetricTypes.COUNTER, "pairs embedded")
TOKENS = MetricSpec("instructor_tokens_total", "count", MetricTypes.COUNTER, "tokens the model read (after truncation)")
TRUNCATED = MetricSpec(
    "instructor_truncated_inputs_total", "count", MetricTypes.COUNTER, "pairs embedded after cutting at max_length"
)
PADDING = MetricSpec(
    "instructor_padding_tokens_total", "count", MetricTypes.COUNTER, "padded positions computed and discarded"
)
BATCH_REQUESTS = MetricSpec(
    "instructor_batch_requests", "count", MetricTypes.HISTOGRAM, "requests per TorchServe batch"
)
BATCH_PAIRS = MetricSpec("instructor_batch_pairs", "count", MetricTypes.HISTOGRAM, "pairs embedded per batch")
MICRO_BATCHES = MetricSpec(
    "instructor_batch_micro_batches", "count", MetricTypes.HISTOGRAM, "forward passes per batch that ran the model"
)
PADDING_RATIO = MetricSpec(
    "instructor_batch_padding_ratio", "ratio", MetricTypes.HISTOGRAM, "padded share of the positions computed"
)
TOKENIZE_SECONDS = MetricSpec(
    "instructor_tokenize_seconds", "s", MetricTypes.HISTOGRAM, "time tokenizing a batch's pairs"
)
ENGINE_SECONDS = MetricSpec("instructor_engine_seconds", "s", MetricTypes.HISTOGRAM, "time in a batch's forward passes")
HANDLE_SECONDS = MetricSpec(
    "instructor_handle_seconds", "s", MetricTypes.HISTOGRAM, "time in handle() for a batch: parse, encode, answers"
)
METRICS = (
    BATCH_REQUESTS,
    BATCH_PAIRS,
    MICRO_BATCHES,
    PADDING_RATIO,
    TOKENIZE_SECONDS,
    ENGINE_SECONDS,
    HANDLE_SECONDS,
    PAIRS,
    TOKENS,
    TRUNCATED,
    PADDING,
    REQUESTS,
)


@dataclasses.dataclass
class BatchStats:
    """What happened to one TorchServe batch; filled in while :meth:`handle` runs."""

    statuses: list[int] = dataclasses.field(default_factory=list)
    pairs: int = 0
    tokens: int = 0
    truncated: int = 0
    tokenize_seconds: float | None = None
    encode: EncodeReport | None = None
    handle_seconds: float | None = None

    def count_embedded(self, rows: Sequence[Any]) -> None:
        """Count embedded rows (:class:`handler.encoder.TokenizedRow`): pairs, tokens and truncations."""
        self.pairs += len(rows)
        self.tokens += sum(len(row.input_ids) for row in rows)
        self.truncated += sum(row.truncated for row in rows)

    def samples(self) -> list[tuple[MetricSpec, float, tuple[str, ...]]]:
        """(metric, value, extra label values) to emit, requests last: when they are scraped, the rest is."""
        samples: list[tuple[MetricSpec, float, tuple[str, ...]]] = [
            (BATCH_REQUESTS, len(self.statuses), ()),
            (BATCH_PAIRS, self.pairs, ()),
        ]
        if self.tokenize_seconds is not None:
            samples.append((TOKENIZE_SECONDS, self.tokenize_seconds, ()))
        if self.handle_seconds is not None:
            samples.append((HANDLE_SECONDS, self.handle_seconds, ()))
        if self.encode is not None:
            computed = self.tokens + self.encode.padding_tokens
            samples += [
                (MICRO_BATCHES, self.encode.micro_batches, ()),
                (PADDING_RATIO, self.encode.padding_tokens / computed if computed else 0.0, ()),
                (ENGINE_SECONDS, self.encode.engine_seconds, ()),
                (PAIRS, self.pairs, ()),
                (TOKENS, self.tokens, ()),
                (TRUNCATED, self.truncated, ()),
                (PADDING, self.encode.padding_tokens, ()),
            ]
        for status, count in sorted(collections.Counter(self.statuses).items()):
            samples.append((REQUESTS, count, (str(status),)))
        return samples


class HandlerMetrics:
    """Emits :class:`BatchStats` through TorchServe's metrics cache (``context.metrics``).

    A context without a metrics cache (a hand-built ``Context`` in tests or tools) records nothing;
    TorchServe's workers always provide one.
    """

    def __init__(self, cache: Any, model_name: str) -> None:
        self.model_name = model_name
        self.metrics = {}
        if cache is not None:
            self.metrics = {
                spec.name: cache.add_metric_to_cache(spec.name, spec.unit, list(spec.labels), spec.kind)
                for spec in METRICS
            }

    def record(self, stats: BatchStats) -> None:
        """Emit one batch's samples, labelled with the model's name."""
        if not self.metrics:
            return
        for spec, value, labels in stats.samples():
            self.metrics[spec.name].add_or_update(value, [self.model_name, *labels])
