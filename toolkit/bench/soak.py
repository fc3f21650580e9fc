"""``python -m toolkit soak-embed``: memory over a long run of the embed job with mixed traffic beside it.

One server serves the demo (MiniLM). For ``--minutes``, ``python -m toolkit embed`` embeds a corpus
with bad rows mixed in (empty, not text, over max_length with truncation off), over and over
(``--restart``), while a second thread sends OpenAI bodies (float and base64), bad bodies (400) and
oversized ones (413). Every ``--sample-s`` seconds the worker's and the frontend's RSS are sampled.
Growth compares the median of the last tenth of the samples with that of the tenth after warm-up
(the first ``--warmup-min`` minutes); the worker must stay the same process. Written to
``docs/benchmarks/soak-<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from toolkit import REPO_ROOT
from toolkit.bench.cli import default_stem
from toolkit.bench.fill import command_line, demo_server
from toolkit.bench.runner import machine
from toolkit.corpus.sample import write_sample_corpus
from toolkit.serve import server
from toolkit.serve.scratch_server import RunningServer

NAME = "soak"
SIDE_BODIES: tuple[dict[str, Any], ...] = (
    {"input": ["an OpenAI body", "with two texts"], "model": NAME},
    {"input": "one text, base64", "encoding_format": "base64", "model": NAME},
    {"inputs": [["", ""]]},
    {"inputs": "not pairs"},
    {"inputs": [["", " ".join(["long"] * 600)]], "truncate": False},
)


def side_traffic(running: RunningServer, stop: threading.Event, statuses: dict[int, int]) -> None:
    """OpenAI and bad bodies, one after another, until ``stop``."""
    index = 0
    while not stop.is_set():
        body = SIDE_BODIES[index % len(SIDE_BODIES)]
        status = running.predict(NAME, body).status_code
        statuses[status] = statuses.get(status, 0) + 1
        index += 1


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def growth(samples: list[float], warmup: int) -> float:
    settled = samples[warmup:]
    tenth = max(1, len(settled) // 10)
    return round(statistics.median(settled[-tenth:]) / statistics.median(settled[:tenth]) - 1, 4)


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from toolkit.corpus.cli import main as embed_main

    corpus = work / "corpus.jsonl"
    write_sample_corpus(corpus, args.rows, bad_every=97)
    with demo_server(work, NAME) as running:
        (worker,) = running.worker_pids(NAME)
        frontend = server.running_pid(running.layout)
        assert frontend is not None
        stop, statuses = threading.Event(), {}
        side = threading.Thread(target=side_traffic, args=(running, stop, statuses))
        side.start()
        samples: list[dict[str, float]] = []
        jobs = 0
        started = time.monotonic()
        command = [
            str(corpus),
            str(work / "out"),
            "--restart",
            "--quiet",
            "--no-truncate",
            "--url",
            running.inference_url,
        ]
        command += ["--management-url", running.management_url, "--key-file", str(running.layout.key_file)]
        command += ["--name", NAME]
        try:
            while time.monotonic() - started < args.minutes * 60:
                runner = threading.Thread(target=lambda: embed_main(command))
                runner.start()
                while runner.is_alive():
                    samples.append(
                        {
                            "s": round(time.monotonic() - started, 1),
                            "worker": rss_mib(worker),
                            "frontend": rss_mib(frontend),
                        }
                    )
                    runner.join(args.sample_s)
                jobs += 1
        finally:
            stop.set()
            side.join()
        same_worker = running.worker_pids(NAME) == [worker]
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    warmup = sum(1 for sample in samples if sample["s"] < args.warmup_min * 60)
    return {
        "minutes": args.minutes,
        "embed_jobs": jobs,
        "rows_per_job": args.rows,
        "last_job_counts": manifest["counts"],
        "side_statuses": statuses,
        "same_worker_process": same_worker,
        "worker_rss_growth": growth([sample["worker"] for sample in samples], warmup),
        "frontend_rss_growth": growth([sample["frontend"] for sample in samples], warmup),
        "samples": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolkit soak-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-min", type=float, default=2.0)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    host = machine()
    with tempfile.TemporaryDirectory(prefix="soak-embed-") as work:
        result = soak(args, Path(work))
    document = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": host,
        "command": command_line("soak-embed", argv),
    }
    document |= result
    path = args.out_dir / f"soak-{default_stem(host)}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    summary = {key: value for key, value in document.items() if key not in ("samples", "machine")}
    print(json.dumps(summary, indent=1))
    print(f"written to {path}")
    ok = result["same_worker_process"] and max(result["worker_rss_growth"], result["frontend_rss_growth"]) < 0.10
    return 0 if ok else 1
