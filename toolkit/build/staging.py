"""Staging a model for an archive: its files linked into place, then brought into a mode's form."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from handler.encoder import InstructorEncoder
from handler.engines import REFERENCE_ENGINE, ExportInputs, engine_spec
from handler.engines.openvino_export import QuantizationReport
from handler.model_files import WEIGHT_FILES
from handler.settings import HandlerSettings, Precision
from toolkit.build.mode_choice import Candidate, Preparer
from toolkit.build.probe_pairs import calibration_pairs, validation_pairs

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


def fp32_reference_loader(model_dir: Path, settings: HandlerSettings) -> Callable[[], InstructorEncoder]:
    """A function that loads the model in fp32 on the reference engine on its first call, then returns that copy."""
    loaded: list[InstructorEncoder] = []

    def reference() -> InstructorEncoder:
        if not loaded:
            fp32 = dataclasses.replace(settings, precision=Precision.FP32, engine=REFERENCE_ENGINE)
            loaded.append(InstructorEncoder.from_folder(model_dir, fp32))
        return loaded[0]

    return reference


def preparer(
    model_dir: Path,
    staged_model: Path,
    settings: HandlerSettings,
    reference: Callable[[], InstructorEncoder] | None = None,
) -> Preparer:
    """Brings the staged model into a candidate's form, redoing only what changes between candidates.

    The engine's exporter (:attr:`handler.engines.EngineSpec.exporter`) says the form and writes it:
    for OpenVINO the encoder exported in f32 (fp32, bf16), statically quantized, or with int8 weights
    (the dynamic scheme; its group goes into ``openvino/engine.json``); for torch the model's own
    weights, stored in bf16 for bf16 (loaded memory-mapped, shared by workers, no conversion). An
    engine that does not need the torch weights gets an archive without them. ``reference`` gives
    the build's fp32 encoder (loaded here, once, when not given).
    """
    spec = engine_spec(settings.engine)
    exporter = spec.exporter_module()
    last_form: list[str] = []  # the staged model's current form (empty: as staged)
    fp32 = reference or fp32_reference_loader(model_dir, settings)
    inputs = ExportInputs(fp32, calibration_pairs(), validation_pairs())

    def prepare(candidate: Candidate) -> QuantizationReport | None:
        wanted = exporter.staged_form(candidate)
        report = None
        if last_form != [wanted]:
            if last_form:
                shutil.rmtree(staged_model)
                stage_model(model_dir, staged_model)
            report = exporter.export(model_dir, staged_model, candidate, inputs)
            if not spec.needs_torch_weights:
                drop_transformer_weights(staged_model)
            last_form[:] = [wanted]
        exporter.configure(staged_model, candidate)
        return report

    return prepare


def drop_transformer_weights(staged_model: Path) -> None:
    """Remove the transformer's weight files (and shards) from a staged model its engine does not read."""
    for name in WEIGHT_FILES:
        (staged_model / name).unlink(missing_ok=True)
    for shard in [*staged_model.glob("model-*.safetensors"), *staged_model.glob("pytorch_model-*.bin")]:
        shard.unlink()


def stage_model(model_dir: Path, target: Path) -> None:
    """Copy the files the server reads from ``model_dir`` to ``target`` (hard links where possible)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns(*SKIPPED_MODEL_FILES), copy_function=link_or_copy)


def link_or_copy(source: str, target: str) -> None:
    """Hard-link where possible: staging a multi-GB model then costs no copy."""
    try:
        Path(target).hardlink_to(Path(source).resolve())
    except OSError:
        shutil.copy2(source, target)
