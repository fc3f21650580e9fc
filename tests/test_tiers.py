"""The tier check itself: an unmarked test that starts TorchServe fails before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, starts_torchserve, write_test_config
from toolkit.serve import server


def test_starting_torchserve_in_an_unmarked_test_fails_it(tmp_path: Path) -> None:
    config, _ = write_test_config(tmp_path, tmp_path / "model_store")
    layout = server.ServerLayout(tmp_path, config, tmp_path / "run")
    try:
        with pytest.raises(pytest.fail.Exception, match="starts TorchServe but is not marked integration"):
            server.start(layout)
    finally:
        stopped = server.stop(layout)  # only does anything if the check let a server start
    assert not stopped and not layout.key_file.exists()


def test_server_scripts_in_an_unmarked_test_fail_it() -> None:
    # --help: were the check to let it through, serve.py would only print its usage.
    with pytest.raises(pytest.fail.Exception, match="not marked integration"):
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "serve.py"), "--help"], check=False, timeout=60)
    # The entrypoint takes no arguments and would serve: only the classification is checked.
    assert starts_torchserve([sys.executable, str(REPO_ROOT / "scripts" / "container_entrypoint.py")])


def test_other_processes_are_not_mistaken_for_torchserve() -> None:
    torchserve = str(Path(sys.executable).with_name("torchserve"))
    assert starts_torchserve([torchserve, "--start", "--ncs"])
    assert not starts_torchserve([torchserve, "--stop"])
    assert not starts_torchserve([sys.executable, "scripts/build_archive.py", "--model", "demo"])
    assert subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"
