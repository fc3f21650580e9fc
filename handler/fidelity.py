"""Fidelity in the archive and at worker start: a reduced mode runs only where it keeps the vectors.

The builder's gate (:mod:`toolkit.build.fidelity_gate`) writes two files into the archive root:

- ``fidelity.json``: its figures and verdict (shown in describe and the worker log);
- ``fidelity-reference.json``: the probe pairs and their fp32 vectors (machine-independent to
  about 1e-6), so every worker can measure its *own* engine on its *own* CPU against them.

At start (:func:`check_at_start`) a worker that would compute in bf16 or int8 encodes the probe
pairs, compares with the stored vectors, and keeps the mode only when the lowest cosine clears the
floor (0.999 bf16, 0.99 int8), or when the build was forced below it on purpose for an explicit
mode. Otherwise it falls back to fp32 where the archive can compute fp32 exactly (OpenVINO bf16 /
auto exports are fp32 models; torch ``auto`` archives keep fp32 weights), else it refuses to load
with the reason. An archive that asks for an explicit reduced mode and carries neither a verdict nor
the vectors is refused (``auto`` falls back to fp32), so a hand-built bf16 or int8 archive never
runs silently.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from handler.engines import engine_spec
from handler.errors import ModelConfigError
from handler.settings import EngineName, Precision

# In the archive root, beside model-config.yaml's handler section.
FIDELITY_FILE = "fidelity.json"
REFERENCE_FILE = "fidelity-reference.json"
# The lowest per-probe cosine to fp32 a mode may give.
MIN_COSINE = {Precision.BF16: 0.999, Precision.INT8: 0.99}
NOT_MEASURED_ON_ENGINE = "not measured on this engine"


def read_fidelity(archive_dir: Path) -> dict[str, Any] | None:
    """The archive's fidelity figures, or None for an archive built without a gate (fp32).

    Raises:
        ModelConfigError: the file exists but is not valid JSON.
    """
    return _read_optional_json(archive_dir / FIDELITY_FILE)


@dataclasses.dataclass(frozen=True)
class ReferenceVectors:
    """The probe pairs and their fp32 vectors, as the builder computed them."""

    pairs: tuple[tuple[str, str], ...]
    vectors: torch.Tensor

    def to_mapping(self) -> dict[str, Any]:
        return {"pairs": [list(pair) for pair in self.pairs], "vectors": self.vectors.tolist()}

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> ReferenceVectors:
        pairs = tuple((str(instruction), str(text)) for instruction, text in raw["pairs"])
        vectors = torch.tensor(raw["vectors"], dtype=torch.float32)
        if vectors.ndim != 2 or len(vectors) != len(pairs):
            raise ValueError(f"{len(pairs)} pairs but vectors of shape {tuple(vectors.shape)}")
        return cls(pairs, vectors)


def read_reference(archive_dir: Path) -> ReferenceVectors | None:
    """The archive's fp32 probe vectors, or None where the archive predates them.

    Raises:
        ModelConfigError: the file exists but is malformed.
    """
    raw = _read_optional_json(archive_dir / REFERENCE_FILE)
    if raw is None:
        return None
    try:
        return ReferenceVectors.from_mapping(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelConfigError(f"{archive_dir / REFERENCE_FILE} is malformed: {err}") from None


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A mode's vectors against the fp32 reference: per-probe cosines and how long the probes took."""

    min_cosine: float
    mean_cosine: float
    probes: int
    seconds: float

    def to_mapping(self) -> dict[str, Any]:
        return {
            "min_cosine": round(self.min_cosine, 6),
            "mean_cosine": round(self.mean_cosine, 6),
            "probes": self.probes,
            "seconds": round(self.seconds, 3),
        }


def measure(encoder: Any, reference: ReferenceVectors) -> Measurement:
    """Encode the probe pairs with ``encoder`` (an :class:`~handler.encoder.InstructorEncoder`)."""
    started = time.perf_counter()
    vectors = encoder.encode(reference.pairs)
    seconds = time.perf_counter() - started
    cosines = torch.nn.functional.cosine_similarity(reference.vectors, vectors, dim=1)
    return Measurement(float(cosines.min()), float(cosines.mean()), len(cosines), seconds)


@dataclasses.dataclass(frozen=True)
class StartupCheck:
    """What a worker decided about its precision at start, and why.

    ``fallback_to_fp32``: the worker must reload its engine in fp32 before serving.
    """

    fallback_to_fp32: bool
    reason: str
    measured: Measurement | None = None

    def to_mapping(self) -> dict[str, Any]:
        measured = None if self.measured is None else self.measured.to_mapping()
        return {"fallback_to_fp32": self.fallback_to_fp32, "reason": self.reason, "measured_at_start": measured}


def fp32_fallback_possible(engine: EngineName, precision: Precision) -> bool:
    """Whether the archive holds what computes fp32 exactly.

    OpenVINO fp32/bf16/auto archives hold an fp32 export; torch archives hold fp32 weights unless
    built for bf16 (stored in bf16). int8 exports are quantized (:attr:`EngineSpec.reduced_in_archive`).
    """
    return precision not in engine_spec(engine).reduced_in_archive


def check_at_start(
    encoder: Any,
    requested: Precision,
    engine: EngineName,
    fidelity: dict[str, Any] | None,
    reference: ReferenceVectors | None,
) -> StartupCheck:
    """Decide whether a worker keeps the reduced mode its encoder was loaded in.

    Raises:
        ModelConfigError: the mode does not (or cannot be shown to) keep the vectors and the archive
            cannot compute fp32 exactly.
    """
    running = encoder.resolved.precision
    if running is Precision.FP32:
        return StartupCheck(False, "fp32: exact, nothing to check")
    floor = MIN_COSINE[running]
    verdict = _build_verdict(fidelity, engine, running)
    forced_explicit = verdict == "forced" and requested is not Precision.AUTO
    if reference is not None:
        measured = measure(encoder, reference)
        figure = f"min cosine {measured.min_cosine:.6f} to the archive's fp32 vectors on {measured.probes} probes"
        if measured.min_cosine >= floor:
            return StartupCheck(False, f"{running.value} measured at start: {figure} (floor {floor})", measured)
        if forced_explicit:
            reason = f"{running.value} kept below the floor {floor}, forced at build: {figure}"
            return StartupCheck(False, reason, measured)
        problem = f"{running.value} on this worker gives {figure}, below the floor {floor}"
        return _fall_back_or_refuse(requested, engine, problem, measured)
    if verdict == "passed" or forced_explicit:
        return StartupCheck(False, f"{running.value}: the build's verdict ({verdict}); no fp32 vectors to re-measure")
    problem = (
        f"the archive asks for precision '{requested.value}' ({running.value} here) but carries "
        f"{'no fidelity verdict' if verdict is None else repr(verdict)} for engine '{engine.value}' and no fp32 "
        "vectors to measure against"
    )
    if requested is Precision.AUTO:
        return _fall_back_or_refuse(requested, engine, problem, None)
    raise ModelConfigError(
        f"{problem}: refused. Build it with scripts/build_archive.py (the fidelity gate measures the mode and "
        "stores the vectors), or --force it there to run below the floor on purpose"
    )


def _build_verdict(fidelity: dict[str, Any] | None, engine: EngineName, running: Precision) -> str | None:
    """The build gate's verdict for this engine and mode: passed, forced, not measured, or None."""
    if fidelity is None or fidelity.get("engine") != engine.value or fidelity.get("precision") != running.value:
        return None
    if fidelity.get("passed") is True:
        return "passed"
    if fidelity.get("forced"):
        return "forced"
    return fidelity.get("verdict") or None


def _fall_back_or_refuse(
    requested: Precision, engine: EngineName, problem: str, measured: Measurement | None
) -> StartupCheck:
    if fp32_fallback_possible(engine, requested):
        return StartupCheck(True, f"{problem}: serving fp32 instead", measured)
    raise ModelConfigError(
        f"{problem}, and this archive cannot compute fp32 exactly: rebuild it with precision 'fp32' "
        "(or build and gate it on a machine like this one)"
    )


def _read_optional_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path} is not valid JSON: {err}") from None
