"""The container tier: the image built (docker, or podman here) and run the ways the README and KServe run it.

Skipped with the reason when no container engine answers. The image is built once per session
from the repo (engine layer cache: only changed stages rebuild), on the local Debian base when
no registry is reachable, with this machine's pip sources mounted into the build only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from tests.conftest import EXCLUDE, REPO_ROOT
from toolkit.build.archive import build_archive
from toolkit.deploy.image import (
    ContainerTool,
    ImageError,
    build_image,
    choose_base,
    choose_torch_index,
    find_container_tool,
    machine_pip_sources,
)
from toolkit.deploy.kserve import lay_out_storage
from toolkit.models import model_source
from toolkit.serve import server

# Containers run TorchServe: also `integration`, so `-m "not integration"` starts no server.
pytestmark = [pytest.mark.container, pytest.mark.integration]

TAG = "localhost/instructor-serve:test"
PUBLIC_BASE = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)[1]
TINI_VERSION = re.search(r"^ARG TINI_VERSION=(\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)[1]
PAIR = ["Represent the Science title:", "3D ActionSLAM: wearable person tracking"]
KEY_FILE = "/home/serve/run/key_file.json"
# The README's way to read a key from a running container.
READ_KEY = 'import json; print(json.load(open("{file}"))["{kind}"]["key"])'
START_DEADLINE_S = 300
STOP_DEADLINE_S = 60


@pytest.fixture(scope="module")
def tool() -> ContainerTool:
    try:
        return find_container_tool()
    except ImageError as err:
        pytest.skip(f"container tier needs docker or podman: {err}")


@pytest.fixture(scope="module")
def base(tool: ContainerTool, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The base image: the Dockerfile's public one when the registry answers, else made locally (once)."""
    log = tmp_path_factory.mktemp("base") / "base.log"
    with log.open("w") as out:
        try:
            local = choose_base(tool, "auto", log=out)
        except ImageError as err:
            pytest.fail(f"no base image: {err} (log: {log})")
    return local or PUBLIC_BASE


@pytest.fixture(scope="module")
def image(tool: ContainerTool, base: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project's image, built from this checkout (cached layers are reused)."""
    build_args = {} if base == PUBLIC_BASE else {"PYTHON_IMAGE": base}
    torch_index = choose_torch_index("auto")
    if torch_index is not None:
        build_args["TORCH_INDEX_URL"] = torch_index
    log = tmp_path_factory.mktemp("image") / "build.log"
    with log.open("w") as out:
        try:
            build_image(tool, TAG, build_args, machine_pip_sources(), log=out)
        except ImageError as err:
            pytest.fail(f"image build failed: {err} (log: {log})")
    return TAG


def inspect(tool: ContainerTool, what: str, name: str, template: str) -> str:
    return tool.call(what, "inspect", "--format", template, name).stdout.strip()


@contextlib.contextmanager
def container(tool: ContainerTool, image: str, *options: str, command: tuple[str, ...] = ()) -> Iterator[str]:
    """A detached container, removed afterwards (its log is printed when the test failed)."""
    name = f"instructor-test-{os.getpid()}-{time.monotonic_ns()}"
    tool.call("run", "-d", "--name", name, *tool.limit_options, *options, image, *command)
    try:
        yield name
    finally:
        print(tool.call("logs", name, check=False).stdout[-4000:])
        tool.call("rm", "-f", name, check=False)


def running(tool: ContainerTool, name: str) -> bool:
    return inspect(tool, "container", name, "{{.State.Running}}") == "true"


def wait_healthy(tool: ContainerTool, name: str, image: str) -> None:
    """Poll the image's own HEALTHCHECK command inside the container until it passes."""
    check = json.loads(inspect(tool, "image", image, "{{json .Config.Healthcheck}}"))
    assert check and check["Test"][0] == "CMD", f"the image has no HEALTHCHECK (built as OCI?): {check}"

    def healthy() -> bool:
        assert running(tool, name), tool.call("logs", name, check=False).stdout[-3000:]
        return tool.call("exec", name, *check["Test"][1:], check=False, timeout=30).returncode == 0

    server.wait_for(healthy, START_DEADLINE_S, f"{name}'s HEALTHCHECK", interval_s=2)


def exec_python(tool: ContainerTool, name: str, code: str) -> str:
    return tool.call("exec", name, "python", "-c", code, timeout=120).stdout.strip()


def embed(port: int, key: str | None, body: object, path: str = "predictions/instructor") -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"http://127.0.0.1:{port}/{path}", json=body, headers=headers, timeout=60)


def assert_close(actual: list[float], expected: list[float], tolerance: float = 1e-5) -> None:
    assert len(actual) == len(expected)
    assert max(abs(a - b) for a, b in zip(actual, expected, strict=True)) <= tolerance


def readable_copy(source: Path, target: Path) -> Path:
    """A copy of ``source`` that the container's uid 1000 can read (pytest's temp folders are 0700)."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_final_stage_holds_the_pinned_set_and_nothing_of_this_machine(tool: ContainerTool, image: str) -> None:
    assert inspect(tool, "image", image, "{{.Config.User}}") == "1000:1000"
    env = json.loads(inspect(tool, "image", image, "{{json .Config.Env}}"))
    assert not [line for line in env if line.startswith("PIP_")], env
    probe = """
import importlib.metadata, json, os, shutil, subprocess
print(json.dumps({
    "installed": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "compilers": [c for c in ("gcc", "cc", "c++", "g++", "clang", "make") if shutil.which(c)],
    "present": [p for p in %s if os.path.exists(p)],
}))
"""
    mounted = [str(path) for path in machine_pip_sources().mounts] + ["/etc/pip.conf", "/etc/xdg/pip/pip.conf"]
    result = tool.call("run", "--rm", *tool.limit_options, "--entrypoint", "python", image, "-c", probe % mounted)
    found = json.loads(result.stdout)
    assert found["compilers"] == []
    assert [path for path in found["present"] if path != "/etc/ssl/certs/ca-certificates.crt"] == []
    pins = dict(
        line.split("==", 1) for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    pins = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}
    unpinned = {
        name: version
        for name, version in found["installed"].items()
        if name != "pip" and pins.get(re.sub(r"[-_.]+", "-", name).lower()) != version.split("+")[0]
    }
    assert unpinned == {}, "installed in the image but not pinned so in constraints.txt"


def test_tini_is_the_pinned_debian_build(tool: ContainerTool, image: str) -> None:
    """Fails when Debian replaced the pinned build: the Dockerfile fell back; update ARG TINI_VERSION."""
    query = ("run", "--rm", *tool.limit_options, "--entrypoint", "dpkg-query", image, "-W", "-f=${Version}", "tini")
    installed = tool.call(*query).stdout.strip()
    assert installed == TINI_VERSION, f"Debian now ships tini {installed}: set ARG TINI_VERSION={installed}"


def test_tini_fallback_when_the_pin_is_gone(tool: ContainerTool, base: str) -> None:
    """The Dockerfile's own tini step, run on the base with a version Debian never had, still installs tini."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (step,) = [line[4:] for line in dockerfile.splitlines() if line.startswith("RUN ") and "TINI_VERSION" in line]
    gone = ("-e", "TINI_VERSION=0.19.0-0+gone", "-e", "TINI_RELEASE=0.19.0")
    command = f"{step} && dpkg-query -W -f='${{Version}}' tini"
    result = tool.call("run", "--rm", *tool.limit_options, *gone, base, "sh", "-c", command, timeout=300)
    assert "WARNING: tini=0.19.0-0+gone is gone from Debian" in result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("0.19.0-")


def test_runs_as_the_readme_says(tool: ContainerTool, image: str, tmp_path: Path) -> None:
    """run -d -p, HEALTHCHECK, embed with the container's key, uid 1000, management inside only, scale, SIGTERM."""
    port = server.free_port()
    with container(tool, image, "-p", f"127.0.0.1:{port}:8080") as name:
        wait_healthy(tool, name, image)
        key = exec_python(tool, name, READ_KEY.format(file=KEY_FILE, kind="inference"))
        answer = embed(port, key, {"inputs": PAIR})
        assert answer.status_code == 200, answer.text
        demo = model_source.resolve("demo", tmp_path)
        make_serve = InstructorEncoder.from_folder(
            demo.path, HandlerSettings.from_mapping({"instruction_mode": demo.instruction_mode.value})
        )
        assert_close(answer.json(), make_serve.encode([tuple(PAIR)])[0].tolist())
        assert embed(port, None, {"inputs": PAIR}).status_code == 400, "answered without the inference key"

        processes = json.loads(
            exec_python(
                tool,
                name,
                "import json, psutil; print(json.dumps([(p.name(), p.uids().real) for p in psutil.process_iter()]))",
            )
        )
        assert {uid for _, uid in processes} == {1000}, processes
        assert "java" in {process for process, _ in processes}, processes

        address = inspect(tool, "container", name, "{{.NetworkSettings.IPAddress}}")
        assert address, "the container has no address of its own"
        assert requests.get(f"http://{address}:8080/ping", timeout=10).status_code == 400  # reachable, wants a key
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{address}:8081/models", timeout=10)
        management = ("--management-url", "http://127.0.0.1:8081", "--key-file", KEY_FILE)
        tool.call("exec", name, "python", "scripts/scale.py", "--min", "2", *management, timeout=300)
        described = json.loads(tool.call("exec", name, "python", "scripts/describe.py", *management).stdout)
        workers = described[0]["workers"]
        assert [worker["status"] for worker in workers] == ["READY", "READY"], workers
        assert_close(embed(port, key, {"inputs": PAIR}).json(), answer.json())

        pid = int(inspect(tool, "container", name, "{{.State.Pid}}"))
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)] if psutil.pid_exists(pid) else []
        started = time.monotonic()
        tool.call("kill", "--signal", "TERM", name)
        exit_code = tool.call("wait", name, timeout=STOP_DEADLINE_S + 30).stdout.strip()
        stopped_s = time.monotonic() - started
        assert exit_code == "0" and stopped_s < STOP_DEADLINE_S, (exit_code, stopped_s)
        left = [process.pid for process in tree if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
        assert len(tree) > 2 and left == [], (tree, left)


def test_serves_a_model_folder_mounted_read_only(
    tool: ContainerTool, image: str, tiny_model_dir: Path, tiny_encoder: InstructorEncoder, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir(mode=0o755)
    readable_copy(tiny_model_dir, models / "tiny")
    port = server.free_port()
    options = ("-p", f"127.0.0.1:{port}:8080", "-v", f"{models}:/models:ro", "-e", "MODEL=/models/tiny")
    with container(tool, image, *options) as name:
        wait_healthy(tool, name, image)
        key = exec_python(tool, name, READ_KEY.format(file=KEY_FILE, kind="inference"))
        answer = embed(port, key, {"inputs": PAIR})
        assert answer.status_code == 200, answer.text
        assert_close(answer.json(), tiny_encoder.encode([tuple(PAIR)])[0].tolist())


def test_runs_as_the_kserve_servingruntime_says(
    tool: ContainerTool, image: str, tiny_model_dir: Path, tiny_encoder: InstructorEncoder, tmp_path: Path
) -> None:
    """The manifest's command, args, env and user, the storage mounted read-only at /mnt/models, KServe v1."""
    runtime = yaml.safe_load((REPO_ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    (spec,) = runtime["spec"]["containers"]
    archive = build_archive(tiny_model_dir, tmp_path / "store", EXCLUDE)
    storage = lay_out_storage(archive, tmp_path / "storage")
    storage.chmod(0o755)
    for path in storage.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = server.free_port()
    env = [option for item in spec.get("env", []) for option in ("-e", f"{item['name']}={item['value']}")]
    options = [
        *("-p", f"127.0.0.1:{port}:{spec['ports'][0]['containerPort']}"),
        *("-v", f"{storage}:/mnt/models:ro", "--user", str(spec["securityContext"]["runAsUser"])),
        *("-e", "TS_SERVICE_ENVELOPE=kserve"),  # what KServe injects; the config makes TorchServe ignore it
        *env,
        *("--entrypoint", spec["command"][0]),
    ]
    with container(tool, image, *options, command=(*spec["command"][1:], *spec["args"])) as name:

        def ready() -> bool:
            assert running(tool, name), tool.call("logs", name, check=False).stdout[-3000:]
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200
            return False

        server.wait_for(ready, START_DEADLINE_S, "the KServe runtime", interval_s=2)
        answer = embed(port, None, {"instances": [PAIR]}, path="v1/models/instructor:predict")
        assert answer.status_code == 200, answer.text
        (vector,) = answer.json()["predictions"]
        assert_close(vector, tiny_encoder.encode([tuple(PAIR)])[0].tolist())
