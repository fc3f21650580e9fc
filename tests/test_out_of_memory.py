"""A real allocation failure, as each library really raises it, becomes a 507 and the worker lives on.

No injected ``MemoryError``: a sequence of 200,000 tokens makes the attention scores of the tiny
T5 model (heads x tokens x tokens floats: terabytes) fail to allocate inside torch and inside
OpenVINO, on any machine. Served, the archive allows that many tokens (T5 has no position table
to overflow), so the request reaches the engine and is answered 507, while a small request of the
same batch is answered 200 (each request is retried alone after a batch runs out of memory), and
the same worker serves on.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.engines.openvino_engine import ALLOCATION_FAILURE
from handler.engines.torch_engine import CPU_ALLOCATION_FAILURE
from handler.errors import EngineOutOfMemory
from handler.settings import HandlerSettings
from tests.conftest import RunningServer, registered_model
from toolkit.build.archive import WorkerConfig, build_archive

# Attention scores of 200k tokens: heads x 4e10 floats, far past any machine's memory; tokens well
# within the token budget of a 600 s responseTimeout even on a loaded machine.
HUGE = 200_000


def huge_batch() -> tuple[torch.Tensor, torch.Tensor]:
    ones = torch.ones((1, HUGE), dtype=torch.long)
    return ones, ones


def test_torch_cpu_allocation_failure_is_engine_out_of_memory(tiny_encoder: InstructorEncoder) -> None:
    with pytest.raises(EngineOutOfMemory, match=CPU_ALLOCATION_FAILURE) as raised:
        tiny_encoder.engine.last_hidden_state(*huge_batch())
    assert type(raised.value.__cause__) is RuntimeError  # what torch really raises on CPU


def test_openvino_allocation_failure_is_engine_out_of_memory(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "engine": "openvino"})
    archive = build_archive(tiny_model_dir, tmp_path, settings, archive_format="no-archive")
    encoder = InstructorEncoder.from_folder(archive / "model", settings)
    with pytest.raises(EngineOutOfMemory, match=ALLOCATION_FAILURE) as raised:
        encoder.engine.last_hidden_state(*huge_batch())
    assert type(raised.value.__cause__) is RuntimeError  # what OpenVINO really raises


def test_other_runtime_errors_stay_what_they_are(tiny_encoder: InstructorEncoder) -> None:
    """Only allocation failures are mapped: a token id outside the vocabulary is not an out-of-memory."""
    ids = torch.full((1, 4), 10**6, dtype=torch.long)
    with pytest.raises(IndexError, match="index out of range"):
        tiny_encoder.engine.last_hidden_state(ids, torch.ones_like(ids))


@pytest.fixture(scope="module")
def roomy(torchserve: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The tiny model with max_length a million tokens and a long responseTimeout, on the shared server."""
    settings = HandlerSettings.from_mapping(
        {"instruction_mode": "exclude", "max_length": HUGE, "micro_batch_tokens": HUGE}
    )
    # Batches of two that leave only when full: the huge request always shares its batch.
    workers = WorkerConfig(batch_size=2, max_batch_delay_ms=10_000, response_timeout_s=600)
    build_archive(tiny_model_dir, torchserve.model_store, settings, workers, name="roomy")
    with registered_model(torchserve, "roomy.mar", "roomy", initial_workers=1) as running:
        yield running


def send_together(server: RunningServer, *texts: str) -> list:
    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(lambda text: server.predict("roomy", {"inputs": ["", text]}, timeout=300), texts))


@pytest.mark.integration
def test_a_real_out_of_memory_is_507_for_its_request_only_and_the_worker_serves_on(roomy: RunningServer) -> None:
    (pid,) = roomy.worker_pids("roomy")
    huge, small = send_together(roomy, "a " * HUGE, "A small request in the same batch.")
    assert huge.status_code == 507, huge.text[:500]
    assert huge.json()["type"] == "OutOfMemoryError" and "fewer or shorter" in huge.json()["message"]
    assert small.status_code == 200, small.text[:500]
    assert all(answer.status_code == 200 for answer in send_together(roomy, "Still here.", "And here."))
    assert roomy.worker_pids("roomy") == [pid]
    assert CPU_ALLOCATION_FAILURE in roomy.model_log()
