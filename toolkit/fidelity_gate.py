"""The build-time fidelity gate: a reduced-precision archive must keep the user's own vectors.

For bf16, int8 and auto archives the builder encodes :data:`toolkit.probes.PROBE_PAIRS` with the
model being archived, once in fp32 (torch, the reference) and once in the archive's mode
through the archive's own engine and staged files, and refuses the archive when the lowest
per-pair cosine falls below the floor: 0.999 for bf16 (and auto, which may run bf16), 0.99 for
int8. The refusal names the figure and a safer mode; ``--force`` builds anyway and records that.
The figures travel in the archive (``fidelity.json``) and show in describe and the worker log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from handler.encoder import InstructorEncoder
from handler.precision import ResolvedPrecision, cpu_flags, has_native_bf16, resolve
from handler.settings import EngineName, HandlerSettings, Precision
from toolkit.probes import PROBE_PAIRS

MIN_COSINE = {Precision.BF16: 0.999, Precision.INT8: 0.99}
SAFER_MODE = {Precision.BF16: "fp32", Precision.INT8: "bf16 (on CPUs with AMX/AVX512_BF16) or fp32"}


class FidelityGateError(Exception):
    """The archive's mode does not keep this model's vectors close enough to fp32."""


@dataclasses.dataclass(frozen=True)
class FidelityReport:
    """One gate run: what was measured, how, and the verdict."""

    precision: str
    engine: str
    measured_with: str
    min_cosine: float
    mean_cosine: float
    floor: float
    probes: int
    passed: bool
    forced: bool

    def to_mapping(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gated_precision(precision: Precision) -> Precision | None:
    """The reduced mode the gate measures for an archive's precision (auto may run bf16)."""
    return {Precision.BF16: Precision.BF16, Precision.AUTO: Precision.BF16, Precision.INT8: Precision.INT8}.get(
        precision
    )


def cosines(reference: InstructorEncoder, candidate: InstructorEncoder) -> torch.Tensor:
    """Per-probe cosine between the two encoders' vectors (all probes in one mixed batch)."""
    exact = reference.encode(PROBE_PAIRS)
    reduced = candidate.encode(PROBE_PAIRS)
    return torch.nn.functional.cosine_similarity(exact, reduced, dim=1)


def _candidate(
    source_dir: Path, staged_dir: Path, settings: HandlerSettings, precision: Precision, flags: frozenset[str]
) -> tuple[InstructorEncoder, str]:
    """The encoder in the mode under test, and a line saying how it was computed on this machine."""
    resolved = ResolvedPrecision(settings.precision, precision, "fidelity gate")
    if precision is Precision.BF16 and not has_native_bf16(flags):
        # OpenVINO would silently compute f32 here: measure bf16 rounding with torch instead.
        torch_settings = dataclasses.replace(settings, engine=EngineName.TORCH)
        encoder = InstructorEncoder.from_folder(source_dir, torch_settings, resolved=resolved)
        return encoder, "torch bf16 (this CPU has no native bf16; the engine would compute f32 here)"
    encoder = InstructorEncoder.from_folder(staged_dir, settings, resolved=resolved)
    return encoder, f"{settings.engine.value} {precision.value} on this CPU"


def run_gate(
    source_dir: Path,
    staged_dir: Path,
    settings: HandlerSettings,
    force: bool = False,
    flags: frozenset[str] | None = None,
) -> FidelityReport | None:
    """Measure the archive's mode against fp32; None when the mode needs no gate (fp32).

    Raises:
        FidelityGateError: the lowest cosine is below the floor and ``force`` is off.
    """
    precision = gated_precision(settings.precision)
    if precision is None:
        return None
    flags = cpu_flags() if flags is None else flags
    reference_settings = dataclasses.replace(settings, precision=Precision.FP32, engine=EngineName.TORCH)
    reference = InstructorEncoder.from_folder(source_dir, reference_settings)
    candidate, measured_with = _candidate(source_dir, staged_dir, settings, precision, flags)
    values = cosines(reference, candidate)
    floor = MIN_COSINE[precision]
    lowest = float(values.min())
    report = FidelityReport(
        precision=precision.value,
        engine=settings.engine.value,
        measured_with=measured_with,
        min_cosine=round(lowest, 6),
        mean_cosine=round(float(values.mean()), 6),
        floor=floor,
        probes=len(values),
        passed=lowest >= floor,
        forced=force and lowest < floor,
    )
    if not report.passed and not force:
        raise FidelityGateError(
            f"fidelity gate: precision '{settings.precision.value}' ({measured_with}) gives min cosine "
            f"{lowest:.5f} to fp32 on {len(values)} probe pairs, below the floor {floor}; use precision "
            f"'{SAFER_MODE[precision]}', or --force to build anyway"
        )
    return report


def auto_hint(model_dir: Path, settings: HandlerSettings, flags: frozenset[str] | None = None) -> str | None:
    """For an fp32 model on a CPU that runs bf16 natively: how ``auto`` would serve it, with its fidelity.

    None when the archive already asks for a reduced mode or ``auto`` would pick fp32 here.
    The figure is this model's own gate measurement in bf16 (torch bf16 rounding).
    """
    if settings.precision is not Precision.FP32:
        return None
    flags = cpu_flags() if flags is None else flags
    decided = resolve(Precision.AUTO, settings.engine, torch.device("cpu"), flags)
    if decided.precision is Precision.FP32:
        return None
    trial = dataclasses.replace(settings, precision=Precision.BF16, engine=EngineName.TORCH)
    report = run_gate(model_dir, model_dir, trial, force=True, flags=flags)
    assert report is not None
    verdict = "passes the gate" if report.passed else "below the gate's floor: keep fp32"
    return (
        f"{decided.reason}: PRECISION=auto would serve this model about 4x faster than fp32 (docs/benchmarks), "
        f"at min cosine {report.min_cosine} to fp32 on {report.probes} probe pairs (floor {report.floor}, {verdict})"
    )
