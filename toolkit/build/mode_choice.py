"""Choosing a mode by measurement: each candidate built, gated and timed here; the fastest that passes kept.

Two requests choose:

- ``int8`` on the OpenVINO engine tries its schemes: ``static`` (NNCF post-training quantization of
  weights and activations, calibrated at build, outlier layers kept in float:
  :func:`handler.engines.openvino_export.quantize_int8`), with NNCF's SmoothQuant default and with a milder one
  (:data:`STATIC_SMOOTH_QUANT_ALPHA`), and ``dynamic`` with run-time activation groups of 128, 64
  and 32 (int8 weights from ``nncf.compress_weights`` INT8_ASYM, activations quantized per group by
  OpenVINO's CPU plugin; smaller groups follow outliers more closely and run slower). The fastest
  scheme that clears the 0.99 floor is kept; the build is refused only when none does, naming every
  scheme's figures and a safer mode (``--force`` then keeps the most faithful).
- ``fastest`` tries every mode this machine serves with the archive's engine: fp32, bf16 (where
  the CPU multiplies bf16 natively) and int8 (each scheme, on OpenVINO), and keeps the fastest that
  clears its floor. fp32 always qualifies, so ``fastest`` never refuses. ``auto`` keeps its
  meaning (decided per worker, never int8).

Speed is :func:`toolkit.build.fidelity_gate.probe_throughput`: the bench's workload (texts of 16-256 tokens)
in batches of 8, best of five passes, on this machine; every candidate's figures and the reason for the choice go into
``fidelity.json`` (describe and the worker log show them). On real all-MiniLM-L6-v2 and
all-mpnet-base-v2 weights static int8 fails the floor (0.928 / 0.957) and the dynamic scheme clears
it (0.996-0.998); on T5 shapes static is the faster (docs/engines.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from handler.engines import DYNAMIC_INT8, STATIC_INT8, engine_spec
from handler.engines.openvino_export import QuantizationReport
from handler.precision import cpu_flags, has_native_bf16
from handler.settings import FASTEST, EngineName, HandlerSettings, Precision
from toolkit.build.fidelity_gate import (
    SAFER_MODE,
    FidelityGateError,
    FidelityReport,
    FP32Reference,
    measure_mode,
    reference_vectors,
)

DYNAMIC_GROUP_SIZES = (128, 64, 32)
# A milder SmoothQuant than NNCF's transformer default (0.95): on real MiniLM and MPNet weights it lifts
# static int8 from 0.928 / 0.957 to 0.992 (docs/benchmarks/fidelity-*.md), where static may be the faster.
STATIC_SMOOTH_QUANT_ALPHA = 0.5


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One way to serve the model: a precision and, for OpenVINO int8, its scheme and group size.

    ``smooth_quant_alpha`` (static int8 only) overrides NNCF's SmoothQuant strength (the builder tries
    NNCF's default and :data:`STATIC_SMOOTH_QUANT_ALPHA`); ``accuracy_control`` (static int8 only) runs
    NNCF's ``quantize_with_accuracy_control`` (:class:`handler.engines.openvino_export.CosineValidation`): a fidelity
    report trial.
    """

    precision: Precision
    scheme: str | None = None
    group: int | None = None
    smooth_quant_alpha: float | None = None
    accuracy_control: bool = False

    @property
    def label(self) -> str:
        if self.scheme is None:
            return self.precision.value
        groups = f" (activation groups of {self.group})" if self.group else ""
        alpha = f" (SmoothQuant alpha {self.smooth_quant_alpha})" if self.smooth_quant_alpha is not None else ""
        control = " (accuracy control)" if self.accuracy_control else ""
        return f"{self.precision.value} {self.scheme}{groups}{alpha}{control}"


OPENVINO_INT8 = (
    Candidate(Precision.INT8, STATIC_INT8),
    Candidate(Precision.INT8, STATIC_INT8, smooth_quant_alpha=STATIC_SMOOTH_QUANT_ALPHA),
    *(Candidate(Precision.INT8, DYNAMIC_INT8, group) for group in DYNAMIC_GROUP_SIZES),
)
# Prepares the staged model for a candidate; returns what the static quantizer kept in float, if it ran.
Preparer = Callable[[Candidate], QuantizationReport | None]


@dataclasses.dataclass(frozen=True)
class Measured:
    """A candidate, its gate report and, for static int8, the Linear layers its export kept in float."""

    candidate: Candidate
    report: FidelityReport
    float_layers: tuple[str, ...] | None = None

    def to_mapping(self) -> dict[str, Any]:
        ranking = self.report.ranking
        return {
            "precision": self.candidate.precision.value,
            "scheme": self.candidate.scheme,
            "dynamic_quantization_group_size": self.candidate.group,
            "smooth_quant_alpha": self.candidate.smooth_quant_alpha,
            "min_cosine": self.report.min_cosine,
            "mean_cosine": self.report.mean_cosine,
            "top10_overlap": round(ranking.top10_overlap, 4) if ranking else None,
            "ndcg_at_10": round(ranking.ndcg_at_10, 4) if ranking else None,
            "sequences_per_s": self.report.build_sequences_per_s,
            "passed": self.report.passed,
            "verdict": self.report.verdict,
        } | ({"int8_float_layers": list(self.float_layers)} if self.float_layers is not None else {})


def candidates_for(requested: str, engine: EngineName, flags: frozenset[str]) -> tuple[Candidate, ...]:
    """What ``requested`` (``int8`` on OpenVINO, or ``fastest``) tries with ``engine`` on a CPU with ``flags``."""
    bf16 = (Candidate(Precision.BF16),) if has_native_bf16(flags) else ()
    schemes = engine_spec(engine).int8_schemes
    int8 = tuple(candidate for candidate in OPENVINO_INT8 if candidate.scheme in schemes)
    if requested == Precision.INT8.value and int8:
        return int8
    if requested == FASTEST:
        return (Candidate(Precision.FP32), *bf16, *(int8 or (Candidate(Precision.INT8),)))
    raise ValueError(f"nothing to choose for precision {requested!r} on engine {engine.value}")


def fastest_passing(measured: Sequence[Measured]) -> Measured | None:
    """The candidate with the highest measured rate among those that passed here (the first on a tie)."""
    passing = [entry for entry in measured if entry.report.passed]
    return max(passing, key=lambda entry: entry.report.build_sequences_per_s or 0.0, default=None)


def choose_mode(
    requested: str,
    model_dir: Path,
    staged_model: Path,
    settings: HandlerSettings,
    prepare: Preparer,
    force: bool,
    say: Callable[[str], None],
    flags: frozenset[str] | None = None,
    exact: FP32Reference | None = None,
) -> tuple[Candidate, FidelityReport, dict[str, Any]]:
    """Prepare, gate and time each candidate; the staged model ends up holding the chosen one.

    Returns the choice, its gate report and what the archive records about the choice. ``exact``:
    the fp32 vectors when the build already has them.

    Raises:
        FidelityGateError: no candidate clears its floor and ``force`` is off.
    """
    flags = cpu_flags() if flags is None else flags
    exact = reference_vectors(model_dir, settings) if exact is None else exact
    measured: list[Measured] = []
    prepared: Candidate | None = None
    float_layers: QuantizationReport | None = None
    for candidate in candidates_for(requested, settings.engine, flags):
        quantized = prepare(candidate)
        float_layers = quantized or float_layers
        prepared = candidate
        report = measure_mode(
            model_dir, staged_model, _settings_for(settings, candidate), candidate.precision, False, flags, exact
        )
        kept = tuple(quantized.ignored_layers) if quantized is not None else None
        measured.append(Measured(candidate, report, kept if candidate.scheme == STATIC_INT8 else None))
        say(
            f"{requested}: {candidate.label}: min cosine {report.min_cosine}, "
            f"{report.build_sequences_per_s} sequences/s ({report.verdict})"
        )
    chosen = fastest_passing(measured)
    if chosen is None:
        chosen = _most_faithful_or_refuse(requested, measured, force)
    reason = _reason(requested, chosen, measured)
    say(reason)
    if chosen.candidate != prepared:
        float_layers = prepare(chosen.candidate) or float_layers
    static = chosen.candidate.scheme == STATIC_INT8
    details: dict[str, Any] = {
        "requested_precision": requested,
        "chosen": chosen.candidate.label,
        "choice": reason,
        "int8_scheme": chosen.candidate.scheme,
        "dynamic_quantization_group_size": chosen.candidate.group,
        "smooth_quant_alpha": chosen.candidate.smooth_quant_alpha,
        "modes_tried": [entry.to_mapping() for entry in measured],
    }
    if static and float_layers is not None:
        details["int8_float_layers"] = list(float_layers.ignored_layers)
        details["int8_outlier_ratios"] = float_layers.outlier_ratios
    report = chosen.report
    if report.passed is False and force:
        report = dataclasses.replace(report, forced=True, verdict="FORCED below the floor")
    return chosen.candidate, report, details


def _settings_for(settings: HandlerSettings, candidate: Candidate) -> HandlerSettings:
    return dataclasses.replace(settings, precision=candidate.precision)


def _most_faithful_or_refuse(requested: str, measured: Sequence[Measured], force: bool) -> Measured:
    best = max(measured, key=lambda entry: entry.report.min_cosine)
    figures = ", ".join(f"{entry.candidate.label} {entry.report.min_cosine}" for entry in measured)
    if not force:
        raise FidelityGateError(
            f"fidelity gate: precision '{requested}' gives min cosine {best.report.min_cosine:.5f} to fp32 at best, "
            f"below the floor {best.report.floor}, with every scheme tried ({figures}); use precision "
            f"'{SAFER_MODE[Precision.INT8]}', or --force to build anyway"
        )
    return best


def _reason(requested: str, chosen: Measured, measured: Sequence[Measured]) -> str:
    """Why this candidate: the fastest that passed, and what the others measured."""
    others = "; ".join(
        f"{entry.candidate.label} {entry.report.build_sequences_per_s}/s, min cosine {entry.report.min_cosine}"
        f" ({entry.report.verdict})"
        for entry in measured
        if entry is not chosen
    )
    if not chosen.report.passed:
        why = "none passed its floor; forced: the most faithful"
    else:
        why = "the fastest that passed its floor"
    return (
        f"{requested} -> {chosen.candidate.label}: {why}, {chosen.report.build_sequences_per_s} sequences/s "
        f"(texts of 16-256 tokens in batches of 8, this machine), min cosine {chosen.report.min_cosine}"
        + (f"; others: {others}" if others else "")
    )
