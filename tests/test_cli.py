"""The user-facing commands (what `make serve`, `make stop` and scripts/ run), against a real TorchServe."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO_ROOT, write_test_config
from toolkit import cli
from toolkit.serve import server
from toolkit.serve.management import TokenKeys

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with the repo's config.properties on free ports."""
    write_test_config(tmp_path, tmp_path / "model_store")
    return tmp_path


def test_serve_twice_keeps_one_server_then_stop(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", str(tiny_model_dir), "--workdir", str(workdir), "--batch-size", "4", "--timeout", "120"]
    layout = server.ServerLayout(workdir, workdir / "config.properties", workdir / ".run")
    inference_url, management_url = server.listener_urls(layout)
    try:
        assert cli.serve_main(args) == 0
        first_pid = server.running_pid(layout)
        output = capsys.readouterr().out
        assert f"serving local folder {tiny_model_dir}" in output
        curl = next(line.strip() for line in output.splitlines() if line.strip().startswith("curl "))
        words = shlex.split(curl)
        body = words[words.index("-d") + 1]
        key = TokenKeys.read(workdir / "key_file.json").inference
        assert f"Bearer {key}" in curl
        answer = requests.post(
            words[2],
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 200 and len(answer.json()) == 48

        assert cli.serve_main(args) == 0
        assert "already running" in capsys.readouterr().out
        assert server.running_pid(layout) == first_pid

        management = ["--key-file", str(workdir / "key_file.json"), "--management-url", management_url]
        assert cli.scale_main(["--min", "2", *management]) == 0
        assert cli.describe_main(management) == 0
        description = json.loads(capsys.readouterr().out.split("\n", 1)[1])
        assert description[0]["minWorkers"] == 2
        assert cli.unregister_main(management) == 0
        assert cli.register_main(["instructor.mar", *management]) == 0
        assert "registered" in capsys.readouterr().out
        assert cli.describe_main(["--name", "absent", *management]) == 1
        assert "HTTP 404" in capsys.readouterr().err
    finally:
        # No assertion in here: it would replace the body's own failure.
        stopped = cli.stop_main(["--workdir", str(workdir)])
    assert stopped == 0
    assert server.running_pid(layout) is None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{inference_url}/ping", timeout=5)


def test_build_refuses_a_folder_that_is_not_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.build_main(["--model", str(tmp_path / "empty"), "--export-dir", str(tmp_path / "store")]) == 1
    assert "is not a model folder" in capsys.readouterr().err


def test_scripts_run_as_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "build_archive.py"),
            "--model",
            "demo",
            "--export-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "offline demo" in result.stdout and (tmp_path / "instructor.mar").is_file()


def test_build_writes_the_chosen_precision(tmp_path: Path, tiny_model_dir: Path) -> None:
    args = ["--model", str(tiny_model_dir), "--export-dir", str(tmp_path), "--format", "no-archive"]
    assert cli.build_main([*args, "--precision", "bf16"]) == 0
    config = yaml.safe_load((tmp_path / "instructor" / "model-config.yaml").read_text())
    assert config["handler"]["precision"] == "bf16" and config["maxBatchDelay"] == 5
