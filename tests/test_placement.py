"""The worker's device and thread policy (handler.placement), learnt without importing TorchServe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import handler.placement as placement
from handler.settings import EngineName, HandlerSettings

REPO = Path(__file__).resolve().parent.parent


def settings(**values: object) -> HandlerSettings:
    return HandlerSettings.from_mapping({"instruction_mode": "exclude", **values})


# Imports handler.placement in a fresh interpreter with TorchServe's ``ts`` blocked.
BLOCKING_IMPORT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ts":
            raise ModuleNotFoundError("No module named 'ts' (blocked by the test)", name=name)
sys.meta_path.insert(0, Block())
import handler.placement
"""


def test_placement_needs_no_torchserve() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKING_IMPORT], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_an_engine_without_gpus_runs_on_the_cpu_whatever_gpu_was_assigned() -> None:
    assert placement.worker_device(settings(engine="openvino"), "0") == torch.device("cpu")
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert placement.worker_device(settings(), "0") == expected
    assert placement.worker_device(settings(), None) == torch.device("cpu")


@pytest.mark.parametrize(
    ("values", "follows"),
    [({}, True), ({"threads": 3}, False), ({"engine": EngineName.OPENVINO.value}, False)],
)
def test_threads_follow_scaling_unless_fixed(values: dict[str, object], follows: bool) -> None:
    assert placement.threads_follow_scaling(settings(**values)) is follows


def test_the_share_counts_at_least_min_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "running_workers", lambda: 1)
    assert placement.worker_cpu_share(settings(), min_workers=3).workers == 3
    assert placement.worker_cpu_share(settings(threads=5), min_workers=3).threads == 5
