"""Build a self-contained TorchServe archive: handler code, model files and model-config.yaml.

``torch-model-archiver --extra-files DIR`` copies the *contents* of DIR into the archive root,
so the archive is staged as ``handler/`` (the package) and ``model/`` (the model folder) under
one staging folder. The handler file is also given as ``--handler``; TorchServe imports it by
file name and finds ``InstructorHandler``, which imports ``handler.*`` from the archive itself.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from handler.budget import MIN_RESPONSE_TIMEOUT_S, measure_rate, response_timeout_for
from handler.encoder import InstructorEncoder
from handler.engines import engine_spec
from handler.fidelity import FIDELITY_FILE, REFERENCE_FILE
from handler.model_files import max_length_for, read_layout
from handler.pooling import check_instruction_mode
from handler.settings import FASTEST, EngineName, HandlerSettings, Precision
from toolkit import REPO_ROOT
from toolkit.build.fidelity_gate import FidelityReport, FP32Reference, gated_precision, reference_vectors, run_gate
from toolkit.build.mode_choice import Candidate, Preparer, choose_mode
from toolkit.build.staging import fp32_reference_loader, preparer, stage_model
from toolkit.errors import ToolkitError
from toolkit.models.model_source import ModelSource

HANDLER_PACKAGE = REPO_ROOT / "handler"
# --archive-format value -> what torch-model-archiver writes into the export folder.
ARCHIVE_FORMATS = {"default": "{name}.mar", "no-archive": "{name}", "tgz": "{name}.tar.gz"}


class ArchiveError(ToolkitError):
    """The archive could not be built; the message says why."""


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """TorchServe's per-model settings, written to ``model-config.yaml`` in the archive.

    Workers are capped (1 by default): every worker holds its own copy of the model, and
    TorchServe would otherwise start one per CPU. ``response_timeout_s`` None: derived at build
    from the mode's measured speed (:func:`handler.budget.response_timeout_for`).
    """

    min_workers: int = 1
    max_workers: int = 1
    batch_size: int = 8
    max_batch_delay_ms: int = 5
    response_timeout_s: int | None = None
    startup_timeout_s: int = 300

    def to_yaml_mapping(self) -> dict[str, Any]:
        """The keys TorchServe reads from model-config.yaml."""
        return {
            "minWorkers": self.min_workers,
            "maxWorkers": self.max_workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s or MIN_RESPONSE_TIMEOUT_S,
            "startupTimeout": self.startup_timeout_s,
        }


def model_config_yaml(workers: WorkerConfig, settings: HandlerSettings) -> str:
    """The archive's ``model-config.yaml``: worker caps plus the handler's own section."""
    if workers.min_workers > workers.max_workers:
        raise ArchiveError(f"min_workers ({workers.min_workers}) exceeds max_workers ({workers.max_workers})")
    document = workers.to_yaml_mapping() | {"handler": settings.to_mapping()}
    return yaml.safe_dump(document, sort_keys=False)


@dataclasses.dataclass
class BuildContext:
    """One archive build, passed through its steps (:data:`BUILD_STEPS`), then packed.

    Holds the model folder, the settings (``fastest`` resolved to the chosen mode by :func:`export`),
    the staging folder, what the gate measured, and the fp32 reference encoder: loaded on first use,
    once per build, and shared by the export (its module is what OpenVINO converts, its tokenizer
    what calibration uses) and the gate (its vectors are what every mode is measured against).
    """

    model_dir: Path
    settings: HandlerSettings
    staging: Path
    workers: WorkerConfig
    force: bool = False
    choose_fastest: bool = False
    say: Callable[[str], None] = lambda line: None
    report: FidelityReport | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    rate: float | None = None
    prepare: Preparer | None = None
    _reference: Callable[[], InstructorEncoder] | None = None
    _exact: FP32Reference | None = None

    @property
    def extra(self) -> Path:
        """What ``--extra-files`` packs: ``handler/`` and ``model/``."""
        return self.staging / "extra"

    @property
    def staged_model(self) -> Path:
        return self.extra / "model"

    def reference(self) -> InstructorEncoder:
        """The model in fp32 on the reference engine (loaded once)."""
        if self._reference is None:
            self._reference = fp32_reference_loader(self.model_dir, self.settings)
        return self._reference()

    def exact(self) -> FP32Reference:
        """The fp32 vectors of the probe pairs and the ranking corpus (computed once)."""
        if self._exact is None:
            self._exact = reference_vectors(self.model_dir, self.settings, self.reference())
        return self._exact

    @property
    def choosing(self) -> bool:
        """Whether the mode is chosen by measurement (``fastest``, or int8 on an engine with int8 schemes)."""
        spec = engine_spec(self.settings.engine)
        return self.choose_fastest or bool(spec.int8_schemes and self.settings.precision is Precision.INT8)


def stage(build: BuildContext) -> None:
    """Copy the handler package and link the model's files into the staging folder."""
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(HANDLER_PACKAGE, build.extra / "handler", ignore=ignored)
    stage_model(build.model_dir, build.staged_model)
    build.prepare = preparer(build.model_dir, build.staged_model, build.settings, build.reference)


def export(build: BuildContext) -> None:
    """Bring the staged model into the served mode: exported, calibrated (static int8) or re-stored.

    When the mode is chosen by measurement, every candidate is exported, gated and timed here
    (:func:`toolkit.build.mode_choice.choose_mode`) and the staged model ends up holding the chosen one.
    """
    assert build.prepare is not None, "stage first"
    settings = build.settings
    if build.choosing:
        requested = FASTEST if build.choose_fastest else settings.precision.value
        chosen, build.report, build.details = choose_mode(
            requested,
            build.model_dir,
            build.staged_model,
            settings,
            build.prepare,
            build.force,
            build.say,
            exact=build.exact(),
        )
        build.settings = dataclasses.replace(settings, precision=chosen.precision)
        build.say(f"staged the model for {settings.engine.value} {chosen.label} in the archive")
        return
    build.prepare(Candidate(settings.precision))
    if not engine_spec(settings.engine).needs_torch_weights:
        build.say(f"exported the encoder for {settings.engine.value} ({settings.precision.value}) into the archive")


def gate(build: BuildContext) -> None:
    """Measure a reduced mode against fp32 (unless the choice already did) and record the figures."""
    if build.report is None and not build.choosing and gated_precision(build.settings.precision) is not None:
        build.report = run_gate(build.model_dir, build.staged_model, build.settings, build.force, exact=build.exact())
    report = build.report
    if report is None:
        return
    build.rate = report.build_tokens_per_s
    (build.extra / FIDELITY_FILE).write_text(json.dumps(report.to_mapping() | build.details, indent=2))
    assert report.reference is not None
    (build.extra / REFERENCE_FILE).write_text(json.dumps(report.reference.to_mapping()))
    build.say(f"{report.summary()}; each worker re-measures its own engine at start")


def size_response_timeout(build: BuildContext) -> None:
    """Derive ``responseTimeout`` from the served mode's speed here, unless the caller set it."""
    if build.workers.response_timeout_s is not None:
        return
    settings = build.settings
    # Ungated archives are measured here, only when the timeout is left to the builder.
    rate = build.rate or measure_rate(InstructorEncoder.from_folder(build.staged_model, settings))
    full_request = settings.max_items_per_request * settings.max_length
    timeout = response_timeout_for(rate, full_request)
    build.workers = dataclasses.replace(build.workers, response_timeout_s=timeout)
    build.say(
        f"responseTimeout {timeout} s: {rate:.0f} tokens/s measured here, a full request of "
        f"{full_request} tokens needs {full_request / rate:.0f} s (workers refuse more than they can "
        "compute in half of it: 413)"
    )


# stage -> export (calibration included, for static int8) -> gate -> timeout; then pack.
BUILD_STEPS: tuple[Callable[[BuildContext], None], ...] = (stage, export, gate, size_response_timeout)


def pack(build: BuildContext, name: str, version: str, export_dir: Path, archive_format: str) -> Path:
    """Write model-config.yaml and run torch-model-archiver; the fp32 reference is dropped first."""
    build._reference = None
    config_file = build.staging / "model-config.yaml"
    config_file.write_text(model_config_yaml(build.workers, build.settings))
    handler_file = build.extra / "handler" / "torchserve_handler.py"
    return run_archiver(name, version, handler_file, build.extra, config_file, export_dir, archive_format)


def archive_for_source(
    source: ModelSource,
    export_dir: str | Path,
    workers: WorkerConfig = WorkerConfig(),
    name: str = "instructor",
    *,
    archive_format: str = "default",
    max_items_per_request: int = HandlerSettings.max_items_per_request,
    precision: str = Precision.FP32.value,
    engine: str = EngineName.TORCH.value,
    force: bool = False,
    say: Callable[[str], None] = print,
    max_length: int | None = None,
    version: str = "1.0",
) -> Path:
    """:func:`build_archive` for a resolved ``MODEL=``: its instruction mode goes into the settings.

    ``max_length`` None serves the model's own ``max_seq_length``; ``precision`` ``fastest`` is
    chosen at build (:mod:`toolkit.build.mode_choice`).
    """
    choose_fastest = precision == FASTEST
    settings = HandlerSettings.from_mapping(
        {
            "instruction_mode": source.instruction_mode.value,
            "max_items_per_request": max_items_per_request,
            "precision": Precision.FP32.value if choose_fastest else precision,
            "engine": engine,
            "max_length": max_length,
        }
    )
    return build_archive(
        source.path,
        export_dir,
        settings,
        workers,
        name,
        version,
        archive_format=archive_format,
        force=force,
        say=say,
        choose_fastest=choose_fastest,
    )


def build_archive(
    model_dir: str | Path,
    export_dir: str | Path,
    settings: HandlerSettings,
    workers: WorkerConfig = WorkerConfig(),
    name: str = "instructor",
    version: str = "1.0",
    archive_format: str = "default",
    force: bool = False,
    say: Callable[[str], None] = lambda line: None,
    choose_fastest: bool = False,
) -> Path:
    """Build ``export_dir/<name>.mar`` (or the ``<name>`` folder for ``no-archive``).

    Engine ``openvino`` exports the encoder into the archive (int8: the fastest NNCF scheme that
    passes the gate) in place of the torch weights; engine ``torch`` with bf16 stores its weights in
    bf16. bf16, int8 and auto archives pass the fidelity gate first (``force`` builds below its
    floor). ``choose_fastest`` ignores ``settings.precision`` and serves the fastest mode that passes
    its gate here (:mod:`toolkit.build.mode_choice`).
    An unset ``settings.max_length`` is written as the model's own ``max_seq_length``; one above
    what the model's position embeddings allow is refused. ``say`` gets one line per build step
    worth telling the user.

    Raises:
        ArchiveError: the format is unknown or the archiver failed.
        FidelityGateError: the mode does not keep this model's vectors (and ``force`` is off).
        ModelConfigError: ``model_dir`` is not a supported model folder, its pooling cannot
            honour ``settings.instruction_mode``, or ``settings.max_length`` is more than its
            position embeddings hold.
    """
    if archive_format not in ARCHIVE_FORMATS:
        raise ArchiveError(f"archive format {archive_format!r} is not one of {sorted(ARCHIVE_FORMATS)}")
    model_dir = Path(model_dir)
    layout = read_layout(model_dir)
    check_instruction_mode(layout.pooling, settings.instruction_mode)
    settings = dataclasses.replace(settings, max_length=max_length_for(settings.max_length, layout))
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mar-staging-", dir=export_dir) as staging_name:
        build = BuildContext(model_dir, settings, Path(staging_name), workers, force, choose_fastest, say)
        for step in BUILD_STEPS:
            step(build)
        return pack(build, name, version, export_dir, archive_format)


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
