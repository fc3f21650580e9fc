"""A real allocation failure, as each library really raises it, becomes a 507 and the worker lives on.

No injected ``MemoryError``: a sequence of a million tokens makes the attention scores of the tiny
T5 model (heads x tokens x tokens floats: terabytes) fail to allocate inside torch and inside
OpenVINO, on any machine. Served, the archive allows a million tokens (T5 has no position table
to overflow), so the request reaches the engine and is answered 507; a request after it is 200
from the same worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.engines.openvino_engine import ALLOCATION_FAILURE
from handler.engines.torch_engine import CPU_ALLOCATION_FAILURE
from handler.errors import EngineOutOfMemory
from handler.settings import HandlerSettings
from tests.conftest import RunningServer, registered_model
from toolkit.archive import WorkerConfig, build_archive

HUGE = 1_000_000


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
    workers = WorkerConfig(response_timeout_s=600)
    build_archive(tiny_model_dir, torchserve.model_store, settings, workers, name="roomy")
    with registered_model(torchserve, "roomy.mar", "roomy", initial_workers=1) as running:
        yield running


@pytest.mark.integration
def test_a_real_out_of_memory_is_507_and_the_worker_serves_on(roomy: RunningServer) -> None:
    (pid,) = roomy.worker_pids("roomy")
    response = roomy.predict("roomy", {"inputs": ["", "a " * HUGE]}, timeout=300)
    assert response.status_code == 507, response.text[:500]
    assert response.json()["type"] == "OutOfMemoryError" and "fewer or shorter" in response.json()["message"]
    after = roomy.predict("roomy", {"inputs": ["Represent the sentence:", "Still here."]})
    assert after.status_code == 200, after.text
    assert roomy.worker_pids("roomy") == [pid]
    assert "EngineOutOfMemory" in roomy.model_log() or CPU_ALLOCATION_FAILURE in roomy.model_log()
