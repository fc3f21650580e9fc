"""What the Docker image runs (toolkit/container.py), run here outside Docker, plus the Dockerfile lint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT
from toolkit import server
from toolkit.container import ContainerSettings, container_config
from toolkit.healthcheck import check
from toolkit.management import TokenKeys


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

    def serve_once() -> None:
        entrypoint = [sys.executable, str(REPO_ROOT / "scripts" / "container_entrypoint.py")]
        process = subprocess.Popen(entrypoint, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            server.wait_for(lambda: check(settings)[0] or process.poll() is not None, 180, "the healthcheck")
            assert process.poll() is None, process.stdout.read()
            key = TokenKeys.read(tmp_path / "run" / "key_file.json").inference
            answer = requests.post(
                f"{env['INFERENCE_ADDRESS']}/predictions/instructor",
                timeout=60,
                json={"inputs": ["Represent the title:", "Hello"]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200 and len(answer.json()) == 48
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=90) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert server.running_pid(settings.layout) is None

    serve_once()
    built = settings.archive_path.stat().st_mtime
    serve_once()
    assert settings.archive_path.stat().st_mtime == built, "the archive was rebuilt instead of reused"


def test_capacity_probe_text_reaches_the_token_target(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from toolkit.capacity import INSTRUCTION, probe_text

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    text = probe_text(tiny_model_dir, 48)
    assert len(tokenizer(INSTRUCTION + text)["input_ids"]) >= 48
    assert len(tokenizer(INSTRUCTION + text.rsplit(" ", 1)[0])["input_ids"]) < 48
