"""Measure one TorchServe worker for capacity planning: memory, load time and a throughput probe.

Used for docs/scaling.md: builds the archive, starts TorchServe from the repo config on free
ports, registers the model with one worker, sends single-pair requests from concurrent
clients, then reads the worker's resident (RSS) and proportional (PSS) set sizes. This is a
probe for sizing, not the benchmark (make bench).
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

from handler.settings import HandlerSettings
from toolkit import server
from toolkit.archive import build_archive
from toolkit.management import ManagementClient, TokenKeys

REPO_ROOT = Path(__file__).resolve().parent.parent


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
        config, overrides = server.write_loopback_config(workdir, store, REPO_ROOT / "config.properties")
        ports = {key: overrides[f"{key}_address"] for key in ("inference", "management")}
        layout = server.ServerLayout(workdir, config, workdir / "run")
        server.start(layout)
        try:
            server.wait_until_up(layout, ports["inference"])
            client = ManagementClient(layout.key_file, ports["management"])
            started = time.monotonic()
            client.register(archive.name, initial_workers=1)
            load_s = time.monotonic() - started
            key = TokenKeys.read(layout.key_file).inference

            def send(index: int) -> None:
                body = {"inputs": [INSTRUCTION, f"{text} {index}"]}
                url = f"{ports['inference']}/predictions/instructor"
                headers = {"Authorization": f"Bearer {key}"}
                requests.post(url, json=body, headers=headers, timeout=300).raise_for_status()

            send(-1)
            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(send, range(requests_count)))
            elapsed = time.monotonic() - started
            (description,) = client.describe("instructor")
            info = psutil.Process(int(description["workers"][0]["pid"])).memory_full_info()
        finally:
            server.stop(layout)
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
