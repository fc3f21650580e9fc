"""Measure one TorchServe worker for capacity planning: memory, load time and a throughput probe.

Used for docs/scaling.md: builds the archive, starts TorchServe from the repo config on free
ports, registers the model with one worker, sends single-pair requests from concurrent
clients, then reads the worker's resident (RSS) and proportional (PSS) set sizes. This is a
probe for sizing; ``make bench`` (toolkit/bench) is the benchmark.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from handler.settings import HandlerSettings
from toolkit.build.archive import build_archive
from toolkit.models.tiny_model import SHAPES, build_test_model
from toolkit.serve.scratch_server import running_server

PROBE_TEXT = (
    "Instruction-tuned embeddings let one model serve retrieval, clustering and classification by "
    "describing the task in a short instruction written before each text it encodes."
)


INSTRUCTION = "Represent the sentence for retrieval:"


def probe_text(model_dir: Path, tokens_per_pair: int) -> str:
    """Words of :data:`PROBE_TEXT` until instruction + text reach ``tokens_per_pair`` tokens.

    Test models have small tokenizers that cut words into many pieces, so the length is set in
    tokens, not words: the same compute as a real tokenizer's text of that many tokens.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    words = PROBE_TEXT.split() * 20
    for count in range(1, len(words) + 1):
        text = " ".join(words[:count])
        if len(tokenizer(INSTRUCTION + text)["input_ids"]) >= tokens_per_pair:
            return text
    return " ".join(words)


def measure_worker(
    model_dir: Path,
    settings: HandlerSettings,
    requests_count: int = 64,
    concurrency: int = 8,
    tokens_per_pair: int = 48,
) -> dict[str, Any]:
    """Serve ``model_dir`` with one worker; report load time, pairs/s of single-pair requests, memory (MiB)."""
    text = probe_text(model_dir, tokens_per_pair)
    with tempfile.TemporaryDirectory(prefix="memory-") as scratch:
        workdir = Path(scratch)
        store = workdir / "model_store"
        archive = build_archive(model_dir, store, settings, archive_format="no-archive")
        with running_server(workdir, store) as running:
            started = time.monotonic()
            running.management.register(archive.name, initial_workers=1)
            load_s = time.monotonic() - started

            def send(index: int) -> None:
                body = {"inputs": [INSTRUCTION, f"{text} {index}"]}
                running.predict("instructor", body, timeout=300).raise_for_status()

            send(-1)
            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, range(requests_count)))
            elapsed = time.monotonic() - started
            (pid,) = running.worker_pids("instructor")
            info = psutil.Process(pid).memory_full_info()
    mib = 2**20
    return {
        "register_to_ready_s": round(load_s, 1),
        "pairs_per_s": round(requests_count / elapsed, 2),
        "concurrency": concurrency,
        "tokens_per_pair": tokens_per_pair,
        "worker_rss_mib": round(info.rss / mib),
        "worker_pss_mib": round(info.pss / mib),
        "worker_shared_mib": round(info.shared / mib),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Probe one worker (memory, load time, pairs/s) for a model shape (random weights) or folder; prints JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="large")
    parser.add_argument("--model", type=Path, default=None, help="a model folder instead of a random shape")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48, help="tokens per pair, instruction included")
    args = parser.parse_args(argv)
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or build_test_model(Path(scratch) / args.shape, args.shape)
        result = measure_worker(model, settings, args.requests, args.concurrency, args.tokens)
    print(json.dumps({"model": str(args.model or f"{args.shape} shape, random weights")} | result, indent=2))
    return 0
