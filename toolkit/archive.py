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
from handler.engines import DYNAMIC_INT8, OPENVINO_DIR, OPENVINO_ENGINE_CONFIG, STATIC_INT8
from handler.fidelity import FIDELITY_FILE, REFERENCE_FILE
from handler.model_files import WEIGHT_FILES, max_length_for, read_layout
from handler.pooling import check_instruction_mode
from handler.precision import load_dtype
from handler.settings import FASTEST, EngineName, HandlerSettings, Precision
from toolkit.export import QuantizationReport, export_openvino
from toolkit.fidelity_gate import run_gate
from toolkit.mode_choice import Candidate, Preparer, choose_mode
from toolkit.model_source import ModelSource
from toolkit.probes import calibration_pairs
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


def _stage(
    staging: Path,
    model_dir: Path,
    settings: HandlerSettings,
    force: bool,
    say: Callable[[str], None],
    choose_fastest: bool = False,
) -> tuple[Path, HandlerSettings, float | None]:
    """Stage handler and model, export the engine's model, run the fidelity gate (or choose the mode).

    Returns the folder, the settings as served (``fastest`` resolved to the mode chosen) and, where
    the gate measured it, the served mode's speed here (tokens per second on a full-length row).
    """
    extra = staging / "extra"
    shutil.copytree(HANDLER_PACKAGE, extra / "handler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    staged_model = extra / "model"
    stage_model(model_dir, staged_model)
    prepare = preparer(model_dir, staged_model, settings)
    details: dict[str, Any] = {}
    requested = FASTEST if choose_fastest else settings.precision.value
    if choose_fastest or (settings.engine is EngineName.OPENVINO and settings.precision is Precision.INT8):
        chosen, report, details = choose_mode(requested, model_dir, staged_model, settings, prepare, force, say)
        settings = dataclasses.replace(settings, precision=chosen.precision)
        say(f"staged the model for {settings.engine.value} {chosen.label} in the archive")
    else:
        prepare(Candidate(settings.precision))
        if settings.engine is EngineName.OPENVINO:
            say(f"exported the encoder for OpenVINO ({settings.precision.value}) into the archive")
        report = run_gate(model_dir, staged_model, settings, force=force)
    rate = None
    if report is not None:
        rate = report.build_tokens_per_s
        (extra / FIDELITY_FILE).write_text(json.dumps(report.to_mapping() | details, indent=2))
        assert report.reference is not None
        (extra / REFERENCE_FILE).write_text(json.dumps(report.reference.to_mapping()))
        say(f"{report.summary()}; each worker re-measures its own engine at start")
    return extra, settings, rate


def preparer(model_dir: Path, staged_model: Path, settings: HandlerSettings) -> Preparer:
    """Brings the staged model into a candidate's form, redoing only what changes between candidates.

    OpenVINO: the encoder exported in f32 (fp32, bf16), statically quantized, or with int8 weights
    (the dynamic scheme; its group goes into ``openvino/engine.json``); the torch weights then stay
    out of the archive. Torch: the model's own weights, stored in bf16 for bf16 (loaded
    memory-mapped, shared by workers, no conversion).
    """
    last_form: list[str] = []  # the staged model's current form (empty: as staged)
    tokenizing: list[InstructorEncoder] = []

    def form(candidate: Candidate) -> str:
        if settings.engine is EngineName.TORCH:
            return "bf16 weights" if candidate.precision is Precision.BF16 else "weights"
        if candidate.precision is Precision.INT8 and candidate.scheme:
            return f"{candidate.scheme} {candidate.smooth_quant_alpha} {candidate.accuracy_control}"
        return "f32 export"

    def prepare(candidate: Candidate) -> QuantizationReport | None:
        wanted = form(candidate)
        report = None
        if last_form != [wanted]:
            if last_form:
                shutil.rmtree(staged_model)
                stage_model(model_dir, staged_model)
            if settings.engine is EngineName.OPENVINO:
                report = _export(candidate)
            elif wanted == "bf16 weights":
                store_transformer_weights(staged_model, load_dtype(Precision.BF16))
            last_form[:] = [wanted]
        if settings.engine is EngineName.OPENVINO:
            write_engine_config(staged_model, candidate)
        return report

    def _export(candidate: Candidate) -> QuantizationReport | None:
        if not tokenizing:
            reference = dataclasses.replace(settings, precision=Precision.FP32, engine=EngineName.TORCH)
            tokenizing.append(InstructorEncoder.from_folder(model_dir, reference))
        calibration = calibration_pairs() if candidate.precision is Precision.INT8 else None
        scheme = candidate.scheme or STATIC_INT8
        report = export_openvino(
            model_dir,
            staged_model,
            calibration,
            tokenizing[0],
            scheme,
            candidate.smooth_quant_alpha,
            candidate.accuracy_control,
        )
        for name in WEIGHT_FILES:
            (staged_model / name).unlink(missing_ok=True)
        for shard in [*staged_model.glob("model-*.safetensors"), *staged_model.glob("pytorch_model-*.bin")]:
            shard.unlink()
        return report

    return prepare


def write_engine_config(staged_model: Path, candidate: Candidate) -> None:
    """Tell the worker how to compile the export (nothing to say but for the dynamic int8 scheme)."""
    path = staged_model / OPENVINO_DIR / OPENVINO_ENGINE_CONFIG
    if candidate.scheme != DYNAMIC_INT8:
        path.unlink(missing_ok=True)
        return
    path.write_text(json.dumps({"int8_scheme": candidate.scheme, "dynamic_quantization_group_size": candidate.group}))


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
    engine: str = EngineName.TORCH.value,
    force: bool = False,
    say: Callable[[str], None] = print,
    max_length: int | None = None,
) -> Path:
    """:func:`build_archive` for a resolved ``MODEL=``: its instruction mode goes into the settings.

    ``max_length`` None serves the model's own ``max_seq_length``; ``precision`` ``fastest`` is
    chosen at build (:mod:`toolkit.mode_choice`).
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
    its gate here (:mod:`toolkit.mode_choice`).
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
        staging = Path(staging_name)
        extra, settings, rate = _stage(staging, model_dir, settings, force, say, choose_fastest)
        if workers.response_timeout_s is None:
            # Ungated archives are measured here, only when the timeout is left to the builder.
            rate = rate or measure_rate(InstructorEncoder.from_folder(extra / "model", settings))
            full_request = settings.max_items_per_request * settings.max_length
            timeout = response_timeout_for(rate, full_request)
            workers = dataclasses.replace(workers, response_timeout_s=timeout)
            say(
                f"responseTimeout {timeout} s: {rate:.0f} tokens/s measured here, a full request of "
                f"{full_request} tokens needs {full_request / rate:.0f} s (workers refuse more than they can "
                "compute in half of it: 413)"
            )
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
