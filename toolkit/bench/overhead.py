"""Where the time goes between an engine's raw rate and the served rate, for one archive.

One TorchServe serves the archive to a closed-loop load (single-pair requests); the handler's own
metrics split the worker's batches into forward passes, tokenizing and the rest of ``handle()``,
and each process's CPU time (the Java frontend, the Python worker, this load generator) says who
used the cores. Afterwards the encoder alone runs the same batches in this process (the limit).
Run: ``python -m toolkit.bench.overhead ARCHIVE_DIR [SECONDS] [CONCURRENCY] [MAX_BATCH_DELAY_MS]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml
from transformers import AutoTokenizer

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from toolkit.bench.limit import measure_limit
from toolkit.bench.load import run_load
from toolkit.bench.runner import WARM_UP, served_name
from toolkit.build.workload import make_pairs, request_bodies, token_counter
from toolkit.serve.prometheus import scrape, total
from toolkit.serve.scratch_server import RunningServer, running_server

HANDLER_SUMS = ("instructor_engine_seconds", "instructor_tokenize_seconds", "instructor_handle_seconds")


def metric_sums(running: RunningServer) -> dict[str, float]:
    """Each series of ``/metrics`` summed over its labels."""
    samples = scrape(running.metrics_url)
    return {name: total(samples, name) for name in {name for name, _ in samples}}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds per named process (children included for the frontend)."""
    found = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        found[name] = times.user + times.system
    return found


def frontend_pid(worker_pid: int) -> int:
    """The Java frontend: the worker's parent."""
    return psutil.Process(worker_pid).ppid()


def measure(
    archive: Path, duration_s: float, concurrency: int, workdir: Path, max_batch_delay_ms: int | None = None
) -> dict[str, Any]:
    """Serve ``archive`` under load, then time its encoder alone on the server's batch size.

    ``max_batch_delay_ms`` overrides the archive's ``maxBatchDelay`` at registration.
    """
    settings = HandlerSettings.from_mapping(yaml.safe_load((archive / "model-config.yaml").read_text())["handler"])
    tokenizer = AutoTokenizer.from_pretrained(str(archive / "model"), local_files_only=True)
    pairs = make_pairs(token_counter(tokenizer), 256)
    bodies = request_bodies(pairs, 1)
    name = served_name(archive)
    with running_server(workdir, archive.parent) as running:
        running.management.register(archive.name, initial_workers=1, max_batch_delay_ms=max_batch_delay_ms)
        running.predict(name, WARM_UP, timeout=900).raise_for_status()
        (worker,) = running.worker_pids(name)
        pids = {"frontend (Java)": frontend_pid(worker), "worker (Python)": worker, "load generator": os.getpid()}
        headers = {"Authorization": f"Bearer {running.keys().inference}"}
        url = f"{running.inference_url}/predictions/{name}"
        run_load(url, headers, bodies, concurrency, min(3.0, duration_s), concurrency)  # settle the batching
        before_metrics, before_cpu, started = metric_sums(running), cpu_seconds(pids), time.perf_counter()
        load = run_load(url, headers, bodies, concurrency, duration_s, concurrency)
        wall = time.perf_counter() - started
        after_metrics, after_cpu = metric_sums(running), cpu_seconds(pids)
    delta = {key: after_metrics.get(key, 0.0) - before_metrics.get(key, 0.0) for key in after_metrics}
    batches = delta.get("instructor_batch_pairs_count", 0.0)
    served_pairs = load.pairs
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    encoder = InstructorEncoder.from_folder(archive / "model", settings, threads=threads)
    batch_pairs = round(delta.get("instructor_batch_pairs_sum", 0.0) / batches) if batches else concurrency
    limit = measure_limit(encoder, pairs, max(1, batch_pairs), duration_s / 2, min_batches=3)
    per_pair = {
        f"{key.removeprefix('instructor_').removesuffix('_seconds')} (worker, wall)": 1000 * delta.get(f"{key}_sum", 0)
        for key in HANDLER_SUMS
    }
    per_pair |= {f"{name} (CPU)": 1000 * (after_cpu[name] - before_cpu[name]) for name in pids}
    return {
        "archive": str(archive),
        "engine": settings.engine.value,
        "precision": settings.precision.value,
        "concurrency": concurrency,
        "max_batch_delay_ms": max_batch_delay_ms,
        "load": load.summary(),
        "wall_s": round(wall, 2),
        "server_batches": int(batches),
        "mean_batch_pairs": round(delta.get("instructor_batch_pairs_sum", 0.0) / batches, 2) if batches else None,
        "limit_pairs_per_s": round(limit.pairs_per_s, 3),
        "served_over_limit": round(load.pairs_per_s / limit.pairs_per_s, 3) if limit.pairs_per_s else None,
        "ms_per_pair": {key: round(value / max(1, served_pairs), 2) for key, value in per_pair.items()},
        "limit_ms_per_pair": round(1000 / limit.pairs_per_s, 2) if limit.pairs_per_s else None,
        "cpu_share_of_wall": {name: round((after_cpu[name] - before_cpu[name]) / (wall * threads), 3) for name in pids},
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    archive = Path(argv[0]).resolve()
    duration_s = float(argv[1]) if len(argv) > 1 else 20.0
    concurrency = int(argv[2]) if len(argv) > 2 else 32
    delay = int(argv[3]) if len(argv) > 3 else None
    workdir = Path(os.environ.get("OVERHEAD_WORKDIR", "/tmp/instructor-overhead"))
    print(json.dumps(measure(archive, duration_s, concurrency, workdir, delay), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
