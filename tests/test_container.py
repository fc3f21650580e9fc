"""What the Docker image runs (toolkit/deploy/container.py), run here outside Docker, plus the Dockerfile lint."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from tests.conftest import REPO_ROOT
from toolkit.deploy.container import ContainerSettings, container_config, main, prepare, record_path
from toolkit.deploy.healthcheck import check
from toolkit.deploy.kserve import archive_model_config
from toolkit.serve import server
from toolkit.serve.management import TokenKeys


def test_defaults_publish_inference_only() -> None:
    settings = ContainerSettings.from_env({})
    properties = server.read_properties(container_config(settings))
    assert properties["inference_address"] == "http://0.0.0.0:8080"
    assert properties["management_address"] == "http://127.0.0.1:8081"
    assert properties["grpc_inference_address"] == "127.0.0.1"
    assert properties["load_models"] == "instructor.mar"
    assert properties["allowed_urls"] == "^$" and "disable_token_authorization" not in properties
    # The model loads at start: nothing registers or unregisters through the API, workflows included.
    assert properties["enable_model_api"] == "false" and properties["workflow_store"] == "/dev/null"


def test_env_overrides() -> None:
    settings = ContainerSettings.from_env(
        {
            "MODEL": "/models/x",
            "WORKERS": "2",
            "ARCHIVE_FORMAT": "no-archive",
            "MANAGEMENT_ADDRESS": "http://0.0.0.0:8081",
            "NAME": "emb",
            "PRECISION": "int8",
        }
    )
    assert settings.precision == "int8"
    with pytest.raises(ValueError, match="PRECISION must be one of"):
        ContainerSettings.from_env({"PRECISION": "fp16"})
    assert settings.workers == 2 and settings.archive_path == Path("/home/serve/model_store/emb")
    assert server.read_properties(container_config(settings))["load_models"] == "emb"


def test_token_authorization_is_on_unless_turned_off() -> None:
    assert "disable_token_authorization" not in server.read_properties(container_config(ContainerSettings()))
    off = ContainerSettings.from_env({"TOKEN_AUTHORIZATION": "off"})
    assert server.read_properties(container_config(off))["disable_token_authorization"] == "true"
    with pytest.raises(ValueError, match="TOKEN_AUTHORIZATION must be 'on' or 'off'"):
        ContainerSettings.from_env({"TOKEN_AUTHORIZATION": "false"})


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hadolint")), str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


PAIR = ("Represent the title:", "Hello")


def store_settings(tmp_path: Path, model: Path, **env: str) -> ContainerSettings:
    """Container settings on a store under ``tmp_path``, serving ``model``, with ``env`` on top."""
    paths = {"MODEL_STORE": str(tmp_path / "store"), "WORKDIR": str(tmp_path / "run"), "MODELS_DIR": str(tmp_path)}
    return ContainerSettings.from_env(paths | {"MODEL": str(model)} | env)


def test_restart_with_the_same_settings_reuses_the_archive(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = store_settings(tmp_path, tiny_model_dir)
    archive = prepare(settings)
    built = archive.stat().st_mtime_ns
    assert prepare(settings) == archive and archive.stat().st_mtime_ns == built, "rebuilt with nothing changed"


@pytest.mark.parametrize(
    ("change", "in_message", "config_key", "expected"),
    [
        ({"PRECISION": "int8"}, "PRECISION 'fp32' -> 'int8'", ("handler", "precision"), "int8"),
        ({"WORKERS": "2"}, "WORKERS 1 -> 2", ("maxWorkers",), 2),
        (
            {"INSTRUCTION_MODE": "include"},
            "INSTRUCTION_MODE 'exclude' -> 'include'",
            ("handler", "instruction_mode"),
            "include",
        ),
    ],
)
def test_restart_with_other_settings_rebuilds_the_archive(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    in_message: str,
    config_key: tuple[str, ...],
    expected: object,
) -> None:
    prepare(store_settings(tmp_path, tiny_model_dir))
    archive = prepare(store_settings(tmp_path, tiny_model_dir, **change))
    value: object = archive_model_config(archive)
    for key in config_key:
        value = value[key]
    assert value == expected, f"the store still holds the archive built before {change}"
    assert in_message in capsys.readouterr().out


def test_another_model_or_changed_files_rebuild_the_archive(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")
    prepare(store_settings(tmp_path, tiny_model_dir))
    archive = prepare(store_settings(tmp_path, other))
    assert f"MODEL {str(tiny_model_dir)!r} -> {str(other)!r}" in capsys.readouterr().out
    built = archive.stat().st_mtime_ns
    config = other / "config.json"
    config.write_text(config.read_text() + "\n")
    os.utime(config, ns=(built + 10**9, built + 10**9))
    prepare(store_settings(tmp_path, other))
    assert "the model folder's files changed" in capsys.readouterr().out and archive.stat().st_mtime_ns != built


def test_an_archive_without_a_record_is_rebuilt(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = store_settings(tmp_path, tiny_model_dir)
    prepare(settings)
    record_path(settings).unlink()
    prepare(settings)
    assert record_path(settings).is_file()


def test_an_unusable_model_folder_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    for key, value in {
        "MODEL": tmp_path / "empty",
        "MODEL_STORE": tmp_path / "store",
        "WORKDIR": tmp_path / "run",
    }.items():
        monkeypatch.setenv(key, str(value))
    assert main() == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error


@pytest.mark.integration
def test_entrypoint_serves_then_stops_on_sigterm(tmp_path: Path, tiny_model_dir: Path) -> None:
    ports = {name: server.free_port() for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")}
    env = dict(os.environ) | {
        "MODEL": str(tiny_model_dir),
        "MODELS_DIR": str(tmp_path / "models"),
        "MODEL_STORE": str(tmp_path / "model_store"),
        "WORKDIR": str(tmp_path / "run"),
        "INFERENCE_ADDRESS": f"http://127.0.0.1:{ports['inference']}",
        "MANAGEMENT_ADDRESS": f"http://127.0.0.1:{ports['management']}",
        "METRICS_ADDRESS": f"http://127.0.0.1:{ports['metrics']}",
        "GRPC_INFERENCE_PORT": str(ports["grpc_i"]),
        "GRPC_MANAGEMENT_PORT": str(ports["grpc_m"]),
    }
    settings = ContainerSettings.from_env(env)

    def serve_once(env: dict[str, str]) -> list[float]:
        entrypoint = [sys.executable, str(REPO_ROOT / "scripts" / "container_entrypoint.py")]
        process = subprocess.Popen(entrypoint, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            server.wait_for(lambda: check(settings)[0] or process.poll() is not None, 180, "the healthcheck")
            assert process.poll() is None, process.stdout.read()
            key = TokenKeys.read(tmp_path / "run" / "key_file.json").inference
            answer = requests.post(
                f"{env['INFERENCE_ADDRESS']}/predictions/instructor",
                timeout=60,
                json={"inputs": list(PAIR)},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200 and len(answer.json()) == 48
            vector = answer.json()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=90) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert server.running_pid(settings.layout) is None
        return vector

    first = serve_once(env)
    # A restart on the same store with another INSTRUCTION_MODE must serve that mode, not the old archive.
    second = serve_once(env | {"INSTRUCTION_MODE": "include"})
    include = InstructorEncoder.from_folder(
        tiny_model_dir, HandlerSettings.from_mapping({"instruction_mode": "include"})
    )
    expected = include.encode([PAIR])[0].tolist()
    assert max(abs(a - b) for a, b in zip(second, expected, strict=True)) <= 1e-5
    assert max(abs(a - b) for a, b in zip(first, second, strict=True)) > 1e-3, "the old archive was served"


def test_capacity_probe_text_reaches_the_token_target(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from toolkit.bench.capacity import INSTRUCTION, probe_text

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = probe_text(tiny_model_dir, 48)
    assert len(tokenizer(INSTRUCTION + text)["input_ids"]) >= 48
    assert len(tokenizer(INSTRUCTION + text.rsplit(" ", 1)[0])["input_ids"]) < 48
