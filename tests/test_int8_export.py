"""OpenVINO int8: the scheme chosen per model by the gate, and outlier protection that never turns itself off."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.engines import openvino_export as export
from handler.engines.openvino_export import ExportError
from handler.fidelity import FIDELITY_FILE
from handler.settings import HandlerSettings, Precision
from tests.conftest import RunningServer, registered_model
from toolkit.build import mode_choice
from toolkit.build.archive import build_archive
from toolkit.build.fidelity_gate import run_gate
from toolkit.build.mode_choice import Candidate
from toolkit.build.probe_pairs import PROBE_PAIRS, validation_pairs
from toolkit.build.staging import preparer, stage_model


def int8(mode: str) -> HandlerSettings:
    return HandlerSettings.from_mapping({"instruction_mode": mode, "engine": "openvino", "precision": "int8"})


def test_every_linear_chosen_is_kept_in_float_bert_included(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every Linear over the threshold, all of MiniLM's are found and kept (its unused pooler is dropped)."""
    monkeypatch.setattr(export, "OUTLIER_RATIO", 0.0)
    monkeypatch.setattr(mode_choice, "OPENVINO_INT8", mode_choice.OPENVINO_INT8[:2])  # the static exports only
    archive = build_archive(minilm_dir, tmp_path, int8("ignore"), archive_format="no-archive")
    static = [t for t in json.loads((archive / FIDELITY_FILE).read_text())["modes_tried"] if t["scheme"] == "static"]
    kept = static[0]["int8_float_layers"]
    assert static[1]["int8_float_layers"] == kept
    assert len(kept) == 6 * 6  # 6 layers x (query, key, value, attention output, intermediate, output)
    assert not any("pooler" in name for name in kept)


def test_a_chosen_layer_missing_from_the_graph_fails_the_build(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if OpenVINO renamed its nodes: the build stops instead of quantizing the outlier layers."""
    monkeypatch.setattr(export, "OUTLIER_RATIO", 0.0)
    monkeypatch.setattr(export, "node_name", lambda name: f"__renamed.{name}/MatMul")
    with pytest.raises(ExportError, match=r"not in the OpenVINO graph under their expected names"):
        build_archive(tiny_model_dir, tmp_path / "store", int8("exclude"))
    assert not list((tmp_path / "store").glob("*.mar"))


def schemes(archive: Path) -> tuple[dict, list[tuple[str, int | None, bool]]]:
    figures = json.loads((archive / FIDELITY_FILE).read_text())
    tried = [(t["scheme"], t["dynamic_quantization_group_size"], t["passed"]) for t in figures["modes_tried"]]
    return figures, tried


def test_the_chooser_keeps_the_fastest_scheme_that_passes(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Every scheme passes on the tiny model: the one with the highest measured rate is served."""
    archive = build_archive(tiny_model_dir, tmp_path, int8("exclude"), archive_format="no-archive")
    figures, tried = schemes(archive)
    assert tried == [
        ("static", None, True),
        ("static", None, True),  # SmoothQuant 0.5
        ("dynamic", 128, True),
        ("dynamic", 64, True),
        ("dynamic", 32, True),
    ]
    assert figures["modes_tried"][1]["smooth_quant_alpha"] == 0.5
    fastest = max(figures["modes_tried"], key=lambda t: t["sequences_per_s"])
    chosen = (figures["int8_scheme"], figures["dynamic_quantization_group_size"])
    assert chosen == (fastest["scheme"], fastest["dynamic_quantization_group_size"])
    assert figures["build_sequences_per_s"] == fastest["sequences_per_s"] and figures["requested_precision"] == "int8"
    engine_file = archive / "model" / "openvino" / "engine.json"
    if fastest["scheme"] == "static":
        assert not engine_file.exists() and "int8_float_layers" in figures
    else:
        assert json.loads(engine_file.read_text())["dynamic_quantization_group_size"] == chosen[1]


def test_the_chooser_takes_the_run_time_scheme_where_only_it_passes(tmp_path: Path, outlier_model_dir: Path) -> None:
    """A common activation offset (200): one int8 scale per tensor loses the signal, groups per row keep it."""
    archive = build_archive(outlier_model_dir, tmp_path, int8("exclude"), archive_format="no-archive")
    figures, tried = schemes(archive)
    assert tried[0] == ("static", None, False) and any(passed for _, _, passed in tried[1:])
    assert figures["int8_scheme"] == "dynamic" and figures["passed"] and figures["min_cosine"] >= 0.99
    engine = json.loads((archive / "model" / "openvino" / "engine.json").read_text())
    assert engine == {
        "int8_scheme": "dynamic",
        "dynamic_quantization_group_size": figures["dynamic_quantization_group_size"],
    }


def test_the_chooser_refuses_when_no_scheme_passes_naming_each(tmp_path: Path, hard_outlier_model_dir: Path) -> None:
    with pytest.raises(
        Exception,
        match=r"every scheme tried \(int8 static 0\.\d+, int8 static \(SmoothQuant alpha 0\.5\) 0\.\d+, "
        r"int8 dynamic \(activation groups of 128\)",
    ) as raised:
        build_archive(hard_outlier_model_dir, tmp_path / "store", int8("exclude"))
    assert "groups of 32" in str(raised.value) and "use precision 'bf16" in str(raised.value)
    forced = build_archive(
        hard_outlier_model_dir, tmp_path / "forced", int8("exclude"), archive_format="no-archive", force=True
    )
    figures, tried = schemes(forced)
    assert figures["forced"] and len(tried) == 5 and not any(passed for _, _, passed in tried)
    best = max(figures["modes_tried"], key=lambda t: t["min_cosine"])
    assert figures["int8_scheme"] == best["scheme"] and figures["verdict"] == "FORCED below the floor"


def test_accuracy_control_measures_on_its_own_pairs_and_the_gate_passes_the_result(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NNCF's accuracy control (a fidelity report trial) runs our validation: fp32 scores ~1, then the int8 model."""
    scores: list[tuple[float, int]] = []
    original = export.CosineValidation.metric

    def recorded(self: export.CosineValidation):
        validate = original(self)

        def scored(compiled: object, indices):
            lowest, per_row = validate(compiled, indices)
            scores.append((lowest, len(per_row)))
            return lowest, per_row

        return scored

    monkeypatch.setattr(export.CosineValidation, "metric", recorded)
    settings = int8("exclude")
    staged = tmp_path / "staged"
    stage_model(tiny_model_dir, staged)
    preparer(tiny_model_dir, staged, settings)(
        Candidate(Precision.INT8, "static", smooth_quant_alpha=-1.0, accuracy_control=True)
    )
    # NNCF measures the fp32 model first, then the int8 one, over every validation pair (or one at a time)
    assert len(scores) >= 2 and scores[0][0] > 0.9999 and scores[-1][0] < scores[0][0]
    assert sum(rows for _, rows in scores) >= 2 * len(validation_pairs())
    assert not set(validation_pairs()) & set(PROBE_PAIRS)  # the gate measures on pairs nobody tuned on
    report = run_gate(tiny_model_dir, staged, settings)
    assert report is not None and report.passed and report.min_cosine >= 0.99


@pytest.mark.integration
def test_each_int8_scheme_is_served_on_the_tiny_model(
    torchserve: RunningServer, tiny_model_dir: Path, outlier_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Static (the only scheme offered) on the tiny model, the run-time scheme where only it passes (injected
    outliers): each archive serves vectors within its floor of fp32 and says which scheme it runs."""
    with monkeypatch.context() as static_only:
        static_only.setattr(mode_choice, "OPENVINO_INT8", mode_choice.OPENVINO_INT8[:1])
        build_archive(tiny_model_dir, torchserve.model_store, int8("exclude"), name="tiny-int8-static")
    build_archive(outlier_model_dir, torchserve.model_store, int8("exclude"), name="tiny-int8-dynamic")
    for name, folder, scheme in (
        ("tiny-int8-static", tiny_model_dir, "static"),
        ("tiny-int8-dynamic", outlier_model_dir, "dynamic"),
    ):
        exact = InstructorEncoder.from_folder(folder, HandlerSettings.from_mapping({"instruction_mode": "exclude"}))
        with registered_model(torchserve, f"{name}.mar", name, initial_workers=1) as running:
            response = running.predict(name, {"inputs": [list(pair) for pair in PROBE_PAIRS]})
            (described,) = running.management.describe(name, customized=True)
        assert response.status_code == 200, response.text
        served = torch.tensor(response.json())
        cosines = torch.nn.functional.cosine_similarity(served, exact.encode(PROBE_PAIRS), dim=1)
        assert float(cosines.min()) >= 0.99, name
        details = described["customizedMetadata"]
        assert details["fidelity"]["int8_scheme"] == scheme and details["fidelity"]["passed"]
        assert details["fidelity_check"]["measured_at_start"]["min_cosine"] >= 0.99


@pytest.mark.integration
def test_real_minilm_int8_builds_without_force_and_is_served(torchserve: RunningServer, minilm_dir: Path) -> None:
    """Real weights: default static int8 is below the floor (0.93 measured); SmoothQuant 0.5 and the run-time scheme
    clear it (0.992-0.997), the fastest of those is kept, and the archive serves it end to end."""
    archive = build_archive(minilm_dir, torchserve.model_store, int8("ignore"), name="minilm-int8")
    with zipfile.ZipFile(archive) as packed:
        figures = json.loads(packed.read(FIDELITY_FILE))
    first = figures["modes_tried"][0]
    assert (first["scheme"], first["smooth_quant_alpha"], first["passed"]) == ("static", None, False)
    assert figures["passed"] and figures["min_cosine"] >= 0.99
    fastest = max((t for t in figures["modes_tried"] if t["passed"]), key=lambda t: t["sequences_per_s"])
    assert figures["build_sequences_per_s"] == fastest["sequences_per_s"]
    exact = InstructorEncoder.from_folder(minilm_dir, HandlerSettings.from_mapping({"instruction_mode": "ignore"}))
    with registered_model(torchserve, "minilm-int8.mar", "minilm-int8", initial_workers=1) as running:
        response = running.predict("minilm-int8", {"inputs": [list(pair) for pair in PROBE_PAIRS]})
        (described,) = running.management.describe("minilm-int8", customized=True)
    assert response.status_code == 200, response.text
    cosines = torch.nn.functional.cosine_similarity(torch.tensor(response.json()), exact.encode(PROBE_PAIRS), dim=1)
    assert float(cosines.min()) >= 0.99
    details = described["customizedMetadata"]
    assert details["precision"] == "int8" and details["fidelity"]["passed"]
    assert details["fidelity_check"]["measured_at_start"]["min_cosine"] >= 0.99
