"""PRECISION=fastest and the ranking figures: choice by measured rates, nDCG@10 against a hand-computed case."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from handler.fidelity import FIDELITY_FILE
from handler.precision import CPU_FLAGS_ENV
from handler.settings import FASTEST, EngineName, HandlerSettings, Precision
from tests.conftest import RunningServer, registered_model
from toolkit.bench import fidelity_report
from toolkit.bench.fidelity_report import targets
from toolkit.build.archive import build_archive
from toolkit.build.fidelity_gate import FidelityReport
from toolkit.build.mode_choice import OPENVINO_INT8, Candidate, Measured, candidates_for, fastest_passing
from toolkit.build.probe_pairs import PROBE_PAIRS
from toolkit.build.ranking import ndcg_against, probe_corpus, ranking_agreement

NO_BF16 = frozenset({"avx2", "avx512f"})
BF16 = NO_BF16 | {"avx512_bf16"}


def measured(precision: str, rate: float, passed: bool | None, scheme: str | None = None) -> Measured:
    report = FidelityReport(
        precision=precision,
        engine="openvino",
        measured_with="hand-made",
        measured_on_engine=passed is not None,
        min_cosine=0.999 if passed else 0.9,
        mean_cosine=0.999,
        floor=0.99,
        probes=14,
        passed=passed,
        forced=False,
        verdict="hand-made",
        build_sequences_per_s=rate,
    )
    return Measured(Candidate(Precision(precision), scheme), report)


def test_fastest_passing_picks_the_highest_rate_among_those_that_passed() -> None:
    entries = [
        measured("fp32", 100.0, True),
        measured("bf16", 300.0, None),  # not measured on its engine: never chosen
        measured("int8", 500.0, False, "static"),  # fastest, below the floor
        measured("int8", 250.0, True, "dynamic"),
        measured("int8", 250.0, True, "dynamic"),
    ]
    assert fastest_passing(entries) is entries[3]  # first of a tie
    assert fastest_passing(entries[:3]) is entries[0]
    assert fastest_passing([entries[1], entries[2]]) is None


def test_the_candidates_follow_the_engine_and_the_cpu_flags() -> None:
    assert candidates_for(FASTEST, EngineName.OPENVINO, NO_BF16) == (Candidate(Precision.FP32), *OPENVINO_INT8)
    assert candidates_for(FASTEST, EngineName.OPENVINO, BF16)[1] == Candidate(Precision.BF16)
    assert candidates_for(FASTEST, EngineName.TORCH, NO_BF16) == (Candidate(Precision.FP32), Candidate(Precision.INT8))
    assert candidates_for("int8", EngineName.OPENVINO, BF16) == OPENVINO_INT8
    with pytest.raises(ValueError, match="nothing to choose"):
        candidates_for("bf16", EngineName.OPENVINO, BF16)


def test_ndcg_against_a_hand_computed_case() -> None:
    """k=3: reference [a, b, c] has gains 3, 2, 1; the candidate returns [b, a, d]."""
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    gained = 2 / math.log2(2) + 3 / math.log2(3) + 0
    assert ndcg_against([0, 1, 2], [1, 0, 3], k=3) == pytest.approx(gained / ideal)
    assert ndcg_against([0, 1, 2], [0, 1, 2], k=3) == pytest.approx(1.0)
    assert ndcg_against([0, 1, 2], [5, 6, 7], k=3) == 0.0


def test_ranking_agreement_on_vectors_built_by_hand() -> None:
    """Two queries, four documents; the candidate swaps query 0's first two documents and loses one of query 1's."""
    documents = torch.eye(4)
    exact_queries = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    candidate_queries = torch.tensor([[3.0, 4.0, 2.0, 1.0], [2.0, 1.0, 3.0, 4.0]])
    figures = ranking_agreement(exact_queries, documents, candidate_queries, documents, k=2)
    # query 0: top-2 {0, 1} both kept, order swapped; query 1: exact [3, 2], candidate [3, 2]
    swapped = (1 / math.log2(2) + 2 / math.log2(3)) / (2 / math.log2(2) + 1 / math.log2(3))
    assert figures.top10_overlap == pytest.approx(1.0) and figures.min_top10_overlap == pytest.approx(1.0)
    assert figures.ndcg_at_10 == pytest.approx((swapped + 1.0) / 2)
    moved = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 4.0, 3.0, 2.0]])  # query 1: [1, 2] against [3, 2]
    figures = ranking_agreement(exact_queries, documents, moved, documents, k=2)
    assert figures.top10_overlap == pytest.approx(0.75) and figures.min_top10_overlap == pytest.approx(0.5)
    assert (figures.queries, figures.documents) == (2, 4)


def test_the_probe_corpus_is_varied_and_carries_instructions() -> None:
    corpus = probe_corpus()
    assert len(corpus.documents) >= 200 and len(corpus.queries) >= 20
    assert len(set(corpus.documents)) == len(corpus.documents)
    assert all(instruction for instruction, _ in corpus.queries + corpus.documents)
    assert len({instruction for instruction, _ in corpus.documents}) > 8


def test_fastest_builds_the_mode_with_the_highest_measured_rate(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU without bf16 (flags injected) fastest tries fp32 and every int8 scheme, and serves the fastest."""
    monkeypatch.setenv(CPU_FLAGS_ENV, ",".join(sorted(NO_BF16)))
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "engine": "openvino"})
    archive = build_archive(tiny_model_dir, tmp_path, settings, archive_format="no-archive", choose_fastest=True)
    figures = json.loads((archive / FIDELITY_FILE).read_text())
    tried = figures["modes_tried"]
    assert [(t["precision"], t["scheme"]) for t in tried] == [("fp32", None)] + [("int8", "static")] * 2 + [
        ("int8", "dynamic")
    ] * 3
    fastest = max((t for t in tried if t["passed"]), key=lambda t: t["sequences_per_s"])
    served = yaml.safe_load((archive / "model-config.yaml").read_text())["handler"]["precision"]
    assert served == fastest["precision"] == figures["precision"] and figures["requested_precision"] == FASTEST
    assert figures["build_sequences_per_s"] == fastest["sequences_per_s"]
    assert "the fastest that passed its floor" in figures["choice"]
    assert all(t["top10_overlap"] is not None and 0.0 <= t["ndcg_at_10"] <= 1.0 for t in tried)


@pytest.mark.integration
def test_a_fastest_archive_is_served_with_its_figures_in_describe(
    torchserve: RunningServer, tiny_model_dir: Path
) -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "engine": "torch"})
    build_archive(tiny_model_dir, torchserve.model_store, settings, name="tiny-fastest", choose_fastest=True)
    with registered_model(torchserve, "tiny-fastest.mar", "tiny-fastest", initial_workers=1) as running:
        response = running.predict("tiny-fastest", {"inputs": [list(pair) for pair in PROBE_PAIRS[:3]]})
        (described,) = running.management.describe("tiny-fastest", customized=True)
    assert response.status_code == 200, response.text
    details = described["customizedMetadata"]
    fidelity = details["fidelity"]
    assert fidelity["requested_precision"] == FASTEST and details["precision"] == fidelity["precision"]
    assert fidelity["ranking"]["queries"] == len(probe_corpus().queries)
    assert {t["precision"] for t in fidelity["modes_tried"]} >= {"fp32", "int8"}


def report_row(mode: str, rate_8x96: float, passed: bool, build_rate: float, alpha: float | None = None) -> dict:
    precision, _, scheme = mode.partition(" ")
    return {
        "mode": mode,
        "precision": precision,
        "scheme": scheme or None,
        "smooth_quant_alpha": alpha,
        "min_cosine": 0.995 if passed else 0.95,
        "passed": passed,
        "build_sequences_per_s": build_rate,
        "raw_sequences_per_s": {"8x96": rate_8x96, "1x64": rate_8x96},
    }


def test_the_fidelity_report_judges_targets_from_its_rows() -> None:
    """Real weights on a bf16 CPU: the chooser's int8 must reach 1.2x OpenVINO bf16 at 8 x 96."""
    rows = [
        report_row("fp32", 100.0, True, 100.0),
        report_row("bf16", 200.0, True, 200.0),
        report_row("int8 static", 300.0, False, 330.0),
        report_row("int8 dynamic (activation groups of 128)", 230.0, True, 250.0),
        report_row("int8 static (SmoothQuant alpha 0.75)", 400.0, True, 400.0, alpha=0.75),  # a trial only
    ]
    model = {"model": "minilm", "real_weights": True, "rows": rows}
    built, speed = targets(model, BF16)
    assert built["verdict"] == "met" and "int8 dynamic" in built["reason"]
    assert speed["verdict"] == "NOT met" and "1.15x" in speed["reason"]
    built, speed = targets(model, NO_BF16)  # against OpenVINO f32: 2.3x
    assert speed["verdict"] == "met" and "2.30x" in speed["reason"]
    rows[3]["passed"] = False
    assert targets(model, BF16) == [
        {"target": "PRECISION=int8 builds without --force", "verdict": "NOT met", "reason": "no scheme passes"}
    ]


def test_make_fidelity_writes_its_report(tmp_path: Path) -> None:
    assert (
        fidelity_report.main(
            ["--models", "tiny", "--seconds", "0.05", "--out", str(tmp_path), "--workdir", str(tmp_path / "work")]
        )
        == 0
    )
    (page,) = tmp_path.glob("fidelity-*.md")
    text = page.read_text()
    assert "tiny test model" in text and "| int8 dynamic (activation groups of 64)" in text and "**kept**" in text
    (raw,) = tmp_path.glob("fidelity-*.json")
    rows = json.loads(raw.read_text())["models"][0]["rows"]
    assert all(row["raw_sequences_per_s"]["8x96"] > 0 and row["top10_overlap"] is not None for row in rows)
