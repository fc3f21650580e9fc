"""Engines say what they can do: every engine's spec, its two modules, and no engine-name decisions elsewhere."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import torch

from handler.batching import DEFAULT_LIMITS, micro_batch_limits
from handler.engines import ENGINES, REFERENCE_ENGINE, check_batch, engine_spec
from handler.errors import EngineInputError, EngineStartError, ModelConfigError
from handler.settings import EngineName, HandlerSettings, Precision

REPO_ROOT = Path(__file__).resolve().parent.parent


def engine_name_comparisons(source: str) -> list[int]:
    """Lines where ``source`` compares something with an ``EngineName`` member (``is``, ``is not``, ``==``, ``!=``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(
            isinstance(operand, ast.Attribute)
            and isinstance(operand.value, ast.Name)
            and operand.value.id == "EngineName"
            for operand in operands
        ):
            lines.append(node.lineno)
    return lines


def test_the_comparison_finder_finds_what_it_looks_for() -> None:
    source = "if engine is EngineName.TORCH:\n    pass\nx = EngineName.OPENVINO != name\ny = EngineName.TORCH\n"
    assert engine_name_comparisons(source) == [1, 3]


def test_no_module_outside_the_engines_package_compares_engine_names() -> None:
    found = {
        str(path.relative_to(REPO_ROOT)): lines
        for folder in ("handler", "toolkit", "scripts")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if "engines" not in path.relative_to(REPO_ROOT).parts
        if (lines := engine_name_comparisons(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"ask the engine's spec (handler.engines.engine_spec) instead: {found}"


@pytest.mark.parametrize("name", list(EngineName))
def test_every_engine_has_a_spec_a_runtime_and_an_exporter(name: EngineName) -> None:
    spec = engine_spec(name)
    assert spec.name is name and "cpu" in spec.devices
    assert spec.exporter_module() is importlib.import_module(spec.exporter)
    for function in ("staged_form", "export", "configure"):
        assert callable(getattr(spec.exporter_module(), function)), f"{spec.exporter} lacks {function}"
    if spec.package == "openvino":
        pytest.importorskip("openvino")
    assert callable(importlib.import_module(spec.runtime).load)
    assert set(spec.micro_batch) <= set(Precision)


def test_the_reference_engine_keeps_the_weights_and_runs_on_gpus() -> None:
    reference = engine_spec(REFERENCE_ENGINE)
    assert reference.computes_reference and reference.needs_torch_weights and reference.runs_on(torch.device("cuda"))
    assert [spec.name for spec in ENGINES.values() if spec.computes_reference] == [REFERENCE_ENGINE]


def test_micro_batch_defaults_come_from_the_spec() -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    for spec in ENGINES.values():
        for precision in (Precision.FP32, Precision.BF16, Precision.INT8):
            limits = micro_batch_limits(settings, spec.name, precision)
            assert (limits.padding_pct, limits.rows) == spec.micro_batch.get(precision, DEFAULT_LIMITS)


def test_a_batch_no_engine_computes_is_a_typed_error() -> None:
    ids = torch.ones((2, 5), dtype=torch.long)
    check_batch(ids, torch.ones_like(ids))
    with pytest.raises(EngineInputError, match=r"ids \(2, 5\) and mask \(2, 4\)"):
        check_batch(ids, torch.ones((2, 4), dtype=torch.long))
    with pytest.raises(EngineInputError, match="must be integers"):
        check_batch(ids.float(), torch.ones_like(ids))
    assert issubclass(EngineStartError, ModelConfigError)  # start failures are still refused at load
