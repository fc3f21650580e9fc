"""The handler's metric samples per batch, and the lines TorchServe's metrics cache writes for them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import ts
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handler.encoder import EncodeReport
from handler.metrics import METRICS, BatchStats, HandlerMetrics


def test_a_batch_that_ran_the_model_reports_every_metric_requests_last() -> None:
    stats = BatchStats([200, 413, 200, 400], pairs=5, tokens=90, truncated=2, tokenize_seconds=0.01)
    stats.handle_seconds = 0.6
    stats.encode = EncodeReport(micro_batches=2, padding_tokens=10, engine_seconds=0.5)
    samples = [(spec.name, value, labels) for spec, value, labels in stats.samples()]
    assert {name for name, _, _ in samples} == {spec.name for spec in METRICS}
    values = {(name, labels): value for name, value, labels in samples}
    assert values[("instructor_batch_requests", ())] == 4
    assert values[("instructor_batch_padding_ratio", ())] == pytest.approx(10 / 100)
    assert values[("instructor_truncated_inputs_total", ())] == 2
    assert [(value, labels) for name, value, labels in samples if name == "instructor_requests_total"] == [
        (2, ("200",)),
        (1, ("400",)),
        (1, ("413",)),
    ]
    assert {name for name, _, _ in samples[-3:]} == {"instructor_requests_total"}


def test_a_batch_that_never_ran_the_model_reports_sizes_and_statuses_only() -> None:
    names = [spec.name for spec, _, _ in BatchStats([400, 415]).samples()]
    assert names == ["instructor_batch_requests", "instructor_batch_pairs"] + ["instructor_requests_total"] * 2


def test_metric_lines_carry_the_model_name(caplog: pytest.LogCaptureFixture) -> None:
    cache = MetricsCacheYamlImpl(str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    cache.initialize_cache()
    metrics = HandlerMetrics(cache, "emb")
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        metrics.record(BatchStats([200]))
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("[METRICS]")]
    assert lines[0].startswith("[METRICS]instructor_batch_requests.Count:1|#ModelName:emb|#type:HISTOGRAM|")
    assert lines[-1].startswith("[METRICS]instructor_requests_total.Count:1|#ModelName:emb,Status:200|#type:COUNTER|")


def test_without_a_metrics_cache_nothing_is_recorded(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ts.metrics.caching_metric"):
        HandlerMetrics(None, "emb").record(BatchStats([200]))
    assert not [record for record in caplog.records if "[METRICS]" in record.getMessage()]
