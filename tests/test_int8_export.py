"""int8's outlier protection never turns itself off: every layer chosen to stay in float is found in the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handler.fidelity import FIDELITY_FILE
from handler.settings import HandlerSettings
from toolkit import export
from toolkit.archive import build_archive
from toolkit.export import ExportError


def int8(mode: str) -> HandlerSettings:
    return HandlerSettings.from_mapping({"instruction_mode": mode, "engine": "openvino", "precision": "int8"})


def test_every_linear_chosen_is_kept_in_float_bert_included(
    tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every Linear over the threshold, all of MiniLM's are found and kept (its unused pooler is dropped)."""
    monkeypatch.setattr(export, "OUTLIER_RATIO", 0.0)
    archive = build_archive(minilm_dir, tmp_path, int8("ignore"), archive_format="no-archive")
    kept = json.loads((archive / FIDELITY_FILE).read_text())["int8_float_layers"]
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
