"""Build a self-contained TorchServe archive: handler code, model files and model-config.yaml.

``torch-model-archiver --extra-files DIR`` copies the *contents* of DIR into the archive root,
so the archive is staged as ``handler/`` (the package) and ``model/`` (the model folder) under
one staging folder. The handler file is also given as ``--handler``; TorchServe imports it by
file name and finds ``InstructorHandler``, which imports ``handler.*`` from the archive itself.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from handler.model_files import read_layout
from handler.pooling import check_instruction_mode
from handler.precision import load_dtype
from handler.settings import HandlerSettings, Precision
from toolkit.model_source import ModelSource
from toolkit.weights import store_transformer_weights

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDLER_PACKAGE = REPO_ROOT / "handler"
# --archive-format value -> what torch-model-archiver writes into the export folder.
ARCHIVE_FORMATS = {"default": "{name}.mar", "no-archive": "{name}", "tgz": "{name}.tar.gz"}
# Model files the server never reads: other frameworks' weights, docs, VCS metadata.
SKIPPED_MODEL_FILES = (
    "*.md",
    ".gitattributes",
    ".download.json",
    ".cache",
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.ot",
    "onnx",
    "openvino",
)


class ArchiveError(Exception):
    """The archive could not be built; the message says why."""


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """TorchServe's per-model settings, written to ``model-config.yaml`` in the archive.

    Workers are capped (1 by default): every worker holds its own copy of the model, and
    TorchServe would otherwise start one per CPU.
    """

    min_workers: int = 1
    max_workers: int = 1
    batch_size: int = 8
    max_batch_delay_ms: int = 5
    response_timeout_s: int = 120
    startup_timeout_s: int = 300

    def to_yaml_mapping(self) -> dict[str, Any]:
        """The keys TorchServe reads from model-config.yaml."""
        return {
            "minWorkers": self.min_workers,
            "maxWorkers": self.max_workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            "startupTimeout": self.startup_timeout_s,
        }


def model_config_yaml(workers: WorkerConfig, settings: HandlerSettings) -> str:
    """The archive's ``model-config.yaml``: worker caps plus the handler's own section."""
    if workers.min_workers > workers.max_workers:
        raise ArchiveError(f"min_workers ({workers.min_workers}) exceeds max_workers ({workers.max_workers})")
    document = workers.to_yaml_mapping() | {"handler": settings.to_mapping()}
    return yaml.safe_dump(document, sort_keys=False)


def _stage(staging: Path, model_dir: Path, precision: Precision) -> Path:
    extra = staging / "extra"
    shutil.copytree(HANDLER_PACKAGE, extra / "handler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stage_model(model_dir, extra / "model")
    if precision is Precision.BF16:
        # Stored in the serving dtype: loaded memory-mapped, shared by workers, no conversion.
        store_transformer_weights(extra / "model", load_dtype(precision))
    return extra


def stage_model(model_dir: Path, target: Path) -> None:
    """Copy the files the server reads from ``model_dir`` to ``target`` (hard links where possible)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(*SKIPPED_MODEL_FILES), copy_function=link_or_copy)


def link_or_copy(source: str, target: str) -> None:
    """Hard-link where possible: staging a multi-GB model then costs no copy."""
    try:
        Path(target).hardlink_to(Path(source).resolve())
    except OSError:
        shutil.copy2(source, target)


def archive_for_source(
    source: ModelSource,
    export_dir: str | Path,
    workers: WorkerConfig = WorkerConfig(),
    name: str = "instructor",
    archive_format: str = "default",
    max_items_per_request: int = HandlerSettings.max_items_per_request,
    precision: str = Precision.FP32.value,
) -> Path:
    """:func:`build_archive` for a resolved ``MODEL=``: its instruction mode goes into the settings."""
    settings = HandlerSettings.from_mapping(
        {
            "instruction_mode": source.instruction_mode.value,
            "max_items_per_request": max_items_per_request,
            "precision": precision,
        }
    )
    return build_archive(source.path, export_dir, settings, workers, name, archive_format=archive_format)


def build_archive(
    model_dir: str | Path,
    export_dir: str | Path,
    settings: HandlerSettings,
    workers: WorkerConfig = WorkerConfig(),
    name: str = "instructor",
    version: str = "1.0",
    archive_format: str = "default",
) -> Path:
    """Build ``export_dir/<name>.mar`` (or the ``<name>`` folder for ``no-archive``).

    ``settings.precision`` bf16 stores the transformer's weights in bf16 inside the archive.

    Raises:
        ArchiveError: the format is unknown or the archiver failed.
        ModelConfigError: ``model_dir`` is not a supported model folder, or its pooling cannot
            honour ``settings.instruction_mode``.
    """
    if archive_format not in ARCHIVE_FORMATS:
        raise ArchiveError(f"archive format {archive_format!r} is not one of {sorted(ARCHIVE_FORMATS)}")
    model_dir = Path(model_dir)
    check_instruction_mode(read_layout(model_dir).pooling, settings.instruction_mode)
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mar-staging-", dir=export_dir) as staging_name:
        staging = Path(staging_name)
        extra = _stage(staging, model_dir, settings.precision)
        config_file = staging / "model-config.yaml"
        config_file.write_text(model_config_yaml(workers, settings))
        handler_file = extra / "handler" / "torchserve_handler.py"
        return run_archiver(name, version, handler_file, extra, config_file, export_dir, archive_format)


def run_archiver(
    name: str,
    version: str,
    handler_file: Path,
    extra_dir: Path,
    config_file: Path,
    export_dir: Path,
    archive_format: str,
) -> Path:
    """Run ``torch-model-archiver``; returns what it wrote into ``export_dir``.

    Raises:
        ArchiveError: the archiver failed.
    """
    command = [
        str(Path(sys.executable).with_name("torch-model-archiver")),
        "--model-name",
        name,
        "--version",
        version,
        "--handler",
        str(handler_file),
        "--extra-files",
        str(extra_dir),
        "--config-file",
        str(config_file),
        "--export-path",
        str(export_dir),
        "--archive-format",
        archive_format,
        "--force",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as err:
        raise ArchiveError(f"cannot run torch-model-archiver ({err}): pip install -r requirements-serve.txt") from err
    if result.returncode != 0:
        raise ArchiveError(f"torch-model-archiver failed ({result.returncode}): {result.stderr.strip()}")
    return export_dir / ARCHIVE_FORMATS[archive_format].format(name=name)
