"""What the Docker image runs: build the archive when needed, run TorchServe, stop it on SIGTERM.

The image's entrypoint (scripts/container_entrypoint.py) is this module, so the test suite runs
exactly what the container does, outside Docker. Settings come from environment variables,
read once in :meth:`ContainerSettings.from_env`. The archive is built at start and recorded in
``<archive>.build.json`` (model folder and its files, instruction mode, precision, workers, handler
code); a restart with the same record reuses it, any difference rebuilds it and says what changed.

Every variable, its default and meaning: docs/configuration.md (from :mod:`toolkit.build.settings`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolkit import REPO_ROOT
from toolkit.build.archive import ARCHIVE_FORMATS, HANDLER_PACKAGE, WorkerConfig, archive_for_source
from toolkit.build.settings import BY_NAME, check, parse_env
from toolkit.commands import environment_only
from toolkit.errors import reporting_errors
from toolkit.models import model_source
from toolkit.models.model_source import ModelSource
from toolkit.serve import server

# Record keys, and how a difference in each is named to the user.
RECORD_NAMES = {
    "model": "MODEL",
    "model_files": "the model folder's files",
    "instruction_mode": "INSTRUCTION_MODE",
    "precision": "PRECISION",
    "engine": "ENGINE",
    "workers": "WORKERS",
    "max_length": "MAX_LENGTH",
    "handler_code": "the handler code",
}


@dataclasses.dataclass(frozen=True)
class ContainerSettings:
    """The container's settings: :data:`toolkit.build.settings.SETTINGS` with their image defaults."""

    model: str = BY_NAME["model"].in_image
    name: str = BY_NAME["name"].in_image
    instruction_mode: str | None = BY_NAME["instruction_mode"].in_image
    archive_format: str = BY_NAME["archive_format"].in_image
    precision: str = BY_NAME["precision"].in_image
    engine: str = BY_NAME["engine"].in_image
    workers: int = BY_NAME["workers"].in_image
    max_length: int | None = BY_NAME["max_length"].in_image
    models_dir: Path = BY_NAME["models_dir"].in_image
    model_store: Path = BY_NAME["model_store"].in_image
    workdir: Path = BY_NAME["workdir"].in_image
    inference_address: str = BY_NAME["inference_address"].in_image
    management_address: str = BY_NAME["management_address"].in_image
    metrics_address: str = BY_NAME["metrics_address"].in_image
    grpc_inference_port: int = BY_NAME["grpc_inference_port"].in_image
    grpc_management_port: int = BY_NAME["grpc_management_port"].in_image
    token_authorization: str = BY_NAME["token_authorization"].in_image
    token_expiration_min: float = BY_NAME["token_expiration_min"].in_image

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            setting = BY_NAME[field.name]
            check(setting, getattr(self, field.name), setting.env or field.name)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContainerSettings:
        """Settings from environment variables; unset ones keep their defaults.

        Raises:
            SettingError (a ValueError): a variable's value is not one its setting takes.
        """
        return cls(**parse_env(env, [field.name for field in dataclasses.fields(cls)]))

    @property
    def layout(self) -> server.ServerLayout:
        return server.ServerLayout(self.workdir, self.workdir / "config.properties", self.workdir / "run")

    @property
    def local_inference_url(self) -> str:
        """The inference address as a process inside the container reaches it."""
        return self.inference_address.replace("0.0.0.0", "127.0.0.1").rstrip("/")

    @property
    def local_management_url(self) -> str:
        """The management address as a process inside the container reaches it."""
        return self.management_address.replace("0.0.0.0", "127.0.0.1").rstrip("/")

    @property
    def archive_path(self) -> Path:
        return self.model_store / ARCHIVE_FORMATS[self.archive_format].format(name=self.name)


def container_config(settings: ContainerSettings) -> str:
    """The repo's config.properties with the container's listeners, store and start-up model.

    The container loads its one model at start (``load_models``), so registering and
    unregistering through the management API (``POST``/``DELETE /models``) are off; scaling
    (``PUT /models/NAME``) and describing still work.
    """
    overrides = {
        "inference_address": settings.inference_address,
        "management_address": settings.management_address,
        "metrics_address": settings.metrics_address,
        "grpc_inference_port": str(settings.grpc_inference_port),
        "grpc_management_port": str(settings.grpc_management_port),
        "model_store": str(settings.model_store),
        "load_models": settings.archive_path.name,
        "enable_model_api": "false",
        "token_expiration_min": f"{settings.token_expiration_min:g}",
    }
    if settings.token_authorization == "off":
        overrides["disable_token_authorization"] = "true"
    return server.with_overrides((REPO_ROOT / "config.properties").read_text(), overrides)


def files_digest(folder: Path, contents: bool = False) -> str:
    """A digest of a folder's files: names, sizes and modification times, or their bytes (small folders)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        stat = path.stat()
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes() if contents else f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def build_record(settings: ContainerSettings, source: ModelSource) -> dict[str, object]:
    """What an archive built now from ``source`` with ``settings`` would hold (see :data:`RECORD_NAMES`)."""
    return {
        "model": str(source.path),
        "model_files": files_digest(source.path),
        "instruction_mode": source.instruction_mode.value,
        "precision": settings.precision,
        "engine": settings.engine,
        "workers": settings.workers,
        "max_length": settings.max_length,
        "handler_code": files_digest(HANDLER_PACKAGE, contents=True),
    }


def record_path(settings: ContainerSettings) -> Path:
    archive = settings.archive_path
    return archive.with_name(archive.name + ".build.json")


def rebuild_reason(settings: ContainerSettings, wanted: dict[str, object]) -> str | None:
    """Why the store's archive cannot be served as it is, or ``None`` when its record matches ``wanted``."""
    if not settings.archive_path.exists():
        return "no archive yet"
    try:
        recorded = json.loads(record_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return f"no record of the settings it was built with ({record_path(settings).name})"
    changes = [
        f"{RECORD_NAMES[key]} {recorded.get(key)!r} -> {value!r}"
        if key in ("model", "instruction_mode", "precision", "engine", "workers")
        else f"{RECORD_NAMES[key]} changed"
        for key, value in wanted.items()
        if recorded.get(key) != value
    ]
    return "; ".join(changes) or None


def prepare(settings: ContainerSettings) -> Path:
    """Build the archive unless the store holds one built from the same record; write config.properties.

    Returns the archive. A rebuild is announced with what differed from the stored archive.
    """
    source = model_source.resolve(settings.model, settings.models_dir, mode=settings.instruction_mode)
    wanted = build_record(settings, source)
    reason = rebuild_reason(settings, wanted)
    if reason is None:
        print(f"reusing {settings.archive_path} (built from {source.label} with the same settings)", flush=True)
    else:
        record_path(settings).unlink(missing_ok=True)
        workers = WorkerConfig(min_workers=settings.workers, max_workers=settings.workers)
        archive_for_source(
            source,
            settings.model_store,
            workers,
            settings.name,
            archive_format=settings.archive_format,
            precision=settings.precision,
            engine=settings.engine,
            max_length=settings.max_length,
        )
        record_path(settings).write_text(json.dumps(wanted, indent=2) + "\n")
        print(f"built {settings.archive_path} from {source.label} ({reason})", flush=True)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    settings.layout.config_file.write_text(container_config(settings))
    return settings.archive_path


def run(settings: ContainerSettings) -> int:
    """Start TorchServe, stay in the foreground, stop it on SIGTERM/SIGINT. Non-zero if it dies."""
    prepare(settings)
    layout = settings.layout
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server.start(layout)
    server.wait_until_up(layout, settings.local_inference_url, timeout_s=300)
    print(f"TorchServe is up: {settings.inference_address}/predictions/{settings.name}", flush=True)
    while not stopping.wait(1.0):
        if server.running_pid(layout) is None:
            print(f"TorchServe exited; see {layout.log_dir}", file=sys.stderr, flush=True)
            return 1
    server.stop(layout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the image; its settings come from the environment (docs/configuration.md)."""
    environment_only(main.__doc__ or "", argv)
    return reporting_errors(lambda: run(ContainerSettings.from_env(os.environ)), also=(ValueError, OSError))
