"""The build-time fidelity gate: a reduced-precision archive must keep the user's own vectors.

For bf16, int8 and auto archives the builder encodes :data:`toolkit.build.probe_pairs.PROBE_PAIRS` with the
model being archived, once in fp32 (torch, the reference) and once in the archive's mode
through the archive's own engine and staged files, and refuses the archive when the lowest
per-pair cosine falls below the floor: 0.999 for bf16 (and auto, which may run bf16), 0.99 for
int8. The refusal names the figure and a safer mode; ``--force`` builds anyway and records that.

The gate never certifies a mode with an engine other than the one that serves it. OpenVINO bf16
on a build machine without native bf16 would silently compute f32, so there the figure comes from
torch bf16 (a stand-in, kinder than the engine: measured 0.99994 against OpenVINO's own 0.99833 on the tiny model) and
the verdict is "not measured on this engine": no pass. The stand-in can still refuse (below the
floor already). Every gated archive also carries the probe pairs' fp32 vectors
(:data:`handler.fidelity.REFERENCE_FILE`), and each worker measures its own engine against them at
start (:func:`handler.fidelity.check_at_start`), which decides where the build could not.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from handler.budget import measure_rate
from handler.encoder import InstructorEncoder
from handler.engines import REFERENCE_ENGINE, engine_spec
from handler.fidelity import MIN_COSINE, NOT_MEASURED_ON_ENGINE, ReferenceVectors
from handler.precision import ResolvedPrecision, cpu_flags, has_native_bf16, resolve
from handler.settings import HandlerSettings, Precision
from toolkit.build.probe_pairs import PROBE_PAIRS
from toolkit.build.ranking import ProbeCorpus, RankingFigures, probe_corpus, ranking_agreement
from toolkit.build.workload import make_pairs, token_counter
from toolkit.errors import ToolkitError

# Speed at build: the bench's workload (texts of 16-256 tokens), this many pairs in server-sized batches.
THROUGHPUT_BATCH = 8
THROUGHPUT_PAIRS = 48
# fp32 through another engine than the reference (OpenVINO f32) must agree to about 1e-4.
FP32_FLOOR = 0.9999
SAFER_MODE = {Precision.BF16: "fp32", Precision.INT8: "bf16 (on CPUs with AMX/AVX512_BF16) or fp32"}


class FidelityGateError(ToolkitError):
    """The archive's mode does not keep this model's vectors close enough to fp32."""


@dataclasses.dataclass(frozen=True)
class FidelityReport:
    """One gate run: what was measured, how, and the verdict.

    ``passed`` is None when the serving engine could not be measured here (``verdict`` says so);
    ``ranking`` is how the mode moves retrieval on the probe corpus (:mod:`toolkit.build.ranking`);
    ``build_tokens_per_s`` is the candidate's speed here on one full-length row
    (:func:`handler.budget.measure_rate`), ``build_sequences_per_s`` on texts of 16-256 tokens in batches
    of 8 (:func:`probe_throughput`); ``reference`` (the probe pairs' fp32 vectors) goes into the archive.
    """

    precision: str
    engine: str
    measured_with: str
    measured_on_engine: bool
    min_cosine: float
    mean_cosine: float
    floor: float
    probes: int
    passed: bool | None
    forced: bool
    verdict: str
    ranking: RankingFigures | None = None
    build_tokens_per_s: float = 0.0
    build_sequences_per_s: float | None = None
    reference: ReferenceVectors | None = dataclasses.field(default=None, compare=False, repr=False)

    def to_mapping(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values.pop("reference")
        values["ranking"] = self.ranking.to_mapping() if self.ranking else None
        return values

    def summary(self) -> str:
        """One line for the build log: the verdict, the cosine and the ranking figures."""
        ranking = (
            f", top-10 overlap {self.ranking.top10_overlap:.3f}, nDCG@10 {self.ranking.ndcg_at_10:.4f} "
            f"on {self.ranking.queries} queries x {self.ranking.documents} documents"
            if self.ranking
            else ""
        )
        return (
            f"fidelity gate {self.verdict}: {self.precision} min cosine {self.min_cosine} (floor {self.floor}, "
            f"{self.probes} probes{ranking}; {self.measured_with})"
        )


@dataclasses.dataclass(frozen=True)
class FP32Reference:
    """The model's fp32 vectors (torch, the reference) for the probe pairs and the ranking corpus."""

    probes: torch.Tensor
    queries: torch.Tensor
    documents: torch.Tensor


def gated_precision(precision: Precision) -> Precision | None:
    """The reduced mode the gate measures for an archive's precision (auto may run bf16)."""
    return {Precision.BF16: Precision.BF16, Precision.AUTO: Precision.BF16, Precision.INT8: Precision.INT8}.get(
        precision
    )


def _candidate(
    source_dir: Path, staged_dir: Path, settings: HandlerSettings, precision: Precision, flags: frozenset[str]
) -> tuple[InstructorEncoder, str, bool]:
    """The encoder in the mode under test, how it was computed here, and whether that is the serving engine."""
    resolved = ResolvedPrecision(settings.precision, precision, "fidelity gate")
    spec = engine_spec(settings.engine)
    if precision is Precision.BF16 and spec.bf16_needs_native_cpu and not has_native_bf16(flags):
        # The engine would silently compute f32 here: torch bf16 stands in, and certifies nothing.
        torch_settings = dataclasses.replace(settings, engine=REFERENCE_ENGINE)
        encoder = InstructorEncoder.from_folder(source_dir, torch_settings, resolved=resolved)
        return encoder, "torch bf16 stand-in (this CPU has no native bf16; OpenVINO would compute f32 here)", False
    encoder = InstructorEncoder.from_folder(staged_dir, settings, resolved=resolved)
    return encoder, f"{settings.engine.value} {precision.value} on this CPU", True


def run_gate(
    source_dir: Path,
    staged_dir: Path,
    settings: HandlerSettings,
    force: bool = False,
    flags: frozenset[str] | None = None,
    exact: FP32Reference | None = None,
) -> FidelityReport | None:
    """Measure the archive's mode against fp32; None when the mode needs no gate (fp32).

    ``flags`` are the build machine's CPU flags (read from it when not given; tests inject them).
    ``exact`` are the fp32 vectors when already computed (:func:`reference_vectors`).

    Raises:
        FidelityGateError: the lowest cosine is below the floor and ``force`` is off.
    """
    precision = gated_precision(settings.precision)
    if precision is None:
        return None
    report = measure_mode(source_dir, staged_dir, settings, precision, force, flags, exact, timed=False)
    if report.min_cosine < report.floor and not force:
        raise FidelityGateError(
            f"fidelity gate: precision '{settings.precision.value}' ({report.measured_with}) gives min cosine "
            f"{report.min_cosine:.5f} to fp32 on {report.probes} probe pairs, below the floor {report.floor}; use "
            f"precision '{SAFER_MODE[precision]}', or --force to build anyway"
        )
    return report


def measure_mode(
    source_dir: Path,
    staged_dir: Path,
    settings: HandlerSettings,
    precision: Precision,
    force: bool = False,
    flags: frozenset[str] | None = None,
    exact: FP32Reference | None = None,
    timed: bool = True,
) -> FidelityReport:
    """The staged model computed in ``precision`` against fp32: cosines, ranking, speed and verdict.

    fp32 through another engine (OpenVINO f32) is measured too, against :data:`FP32_FLOOR`. ``timed``
    off skips :func:`probe_throughput` (only a choice between modes needs it).
    """
    flags = cpu_flags() if flags is None else flags
    exact = reference_vectors(source_dir, settings) if exact is None else exact
    candidate, measured_with, on_engine = _candidate(source_dir, staged_dir, settings, precision, flags)
    values = torch.nn.functional.cosine_similarity(exact.probes, candidate.encode(PROBE_PAIRS), dim=1)
    ranking = ranking_agreement(exact.queries, exact.documents, *_encode_corpus(candidate, probe_corpus()))
    floor = MIN_COSINE.get(precision, FP32_FLOOR)
    lowest = float(values.min())
    below = lowest < floor
    if below:
        verdict = "FORCED below the floor" if force else "refused"
    else:
        verdict = "passed" if on_engine else NOT_MEASURED_ON_ENGINE
    return FidelityReport(
        precision=precision.value,
        engine=settings.engine.value,
        measured_with=measured_with,
        measured_on_engine=on_engine,
        min_cosine=round(lowest, 6),
        mean_cosine=round(float(values.mean()), 6),
        floor=floor,
        probes=len(values),
        passed=(not below) if on_engine else (False if below else None),
        forced=force and below,
        verdict=verdict,
        ranking=ranking,
        build_tokens_per_s=round(measure_rate(candidate), 1),
        build_sequences_per_s=round(probe_throughput(candidate), 1) if timed else None,
        reference=ReferenceVectors(PROBE_PAIRS, exact.probes),
    )


def reference_vectors(
    source_dir: Path, settings: HandlerSettings, encoder: InstructorEncoder | None = None
) -> FP32Reference:
    """The fp32 vectors (torch, the reference): computed with ``encoder`` (the build's fp32 encoder)
    when given, else with the model loaded here and dropped after."""
    if encoder is None:
        reference_settings = dataclasses.replace(settings, precision=Precision.FP32, engine=REFERENCE_ENGINE)
        encoder = InstructorEncoder.from_folder(source_dir, reference_settings)
    return FP32Reference(encoder.encode(PROBE_PAIRS), *_encode_corpus(encoder, probe_corpus()))


def _encode_corpus(encoder: InstructorEncoder, corpus: ProbeCorpus) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus's query and document vectors, in batches of the server's micro-batch size."""
    return encoder.encode(list(corpus.queries)), encoder.encode(list(corpus.documents))


def probe_throughput(encoder: InstructorEncoder, passes: int = 5) -> float:
    """Sequences per second on the bench's workload in batches of 8, best of ``passes``.

    48 pairs with an ~8-token instruction and texts of 16-256 tokens (log-uniform,
    :func:`toolkit.build.workload.make_pairs`): what a busy server's batches hold, the rate
    ``PRECISION=fastest`` and the int8 chooser compare. (Short texts alone ranked int8 above bf16 on
    real MiniLM where the served limit on this workload ranks them the other way.)
    """
    pairs = make_pairs(token_counter(encoder.tokenizer), THROUGHPUT_PAIRS)
    rows = encoder.tokenize(pairs)
    batches = [rows[start : start + THROUGHPUT_BATCH] for start in range(0, len(rows), THROUGHPUT_BATCH)]
    encoder.encode_rows(batches[0])
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        for batch in batches:
            encoder.encode_rows(batch)
        best = min(best, time.perf_counter() - started)
    return len(rows) / best


def auto_hint(model_dir: Path, settings: HandlerSettings, flags: frozenset[str] | None = None) -> str | None:
    """For an fp32 model on a CPU that runs bf16 natively: how ``auto`` would serve it, with its fidelity.

    None when the archive already asks for a reduced mode (its own gate figure is in describe) or
    ``auto`` would pick fp32 here. The figure is torch bf16 against fp32 on the probe set, measured
    with one copy of the model (cast to bf16 in place after the fp32 pass); ``make serve`` asks
    before any worker of the archive starts, so the model is never held twice.
    """
    if settings.precision is not Precision.FP32:
        return None
    flags = cpu_flags() if flags is None else flags
    decided = resolve(Precision.AUTO, settings.engine, torch.device("cpu"), flags)
    if decided.precision is Precision.FP32:
        return None
    encoder = InstructorEncoder.from_folder(
        model_dir, dataclasses.replace(settings, precision=Precision.FP32, engine=REFERENCE_ENGINE)
    )
    exact = encoder.encode(PROBE_PAIRS)
    to_bf16_in_place(encoder.engine.transformer)
    values = torch.nn.functional.cosine_similarity(exact, encoder.encode(PROBE_PAIRS), dim=1)
    floor = MIN_COSINE[Precision.BF16]
    lowest = float(values.min())
    verdict = "passes the gate" if lowest >= floor else "below the gate's floor: keep fp32"
    computes_reference = engine_spec(settings.engine).computes_reference
    engine_note = "" if computes_reference else f"; each {settings.engine.value} worker measures its own at start"
    return (
        f"{decided.reason}: PRECISION=auto would serve this model about 4x faster than fp32 (docs/benchmarks), "
        f"at min cosine {round(lowest, 6)} to fp32 on {len(values)} probe pairs (torch bf16, floor {floor}, "
        f"{verdict}{engine_note})"
    )


def to_bf16_in_place(transformer: torch.nn.Module) -> None:
    """Cast a transformers model to bf16 in place, as the torch engine loads it for bf16.

    Checked (tests/test_engines.py): ``from_pretrained(dtype=torch.bfloat16)`` in transformers 5 puts
    every parameter in bf16, T5's ``wo`` included (``_keep_in_fp32_modules`` applies to fp16 only).
    """
    transformer.to(torch.bfloat16)
