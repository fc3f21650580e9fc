"""Precision modes: bf16 and int8 vectors stay close to fp32; impossible combinations are refused.

The gate's floors (:data:`handler.fidelity.MIN_COSINE`): cosine to the fp32 vector >= 0.999 for
bf16 and >= 0.99 for int8, on every pair; real MiniLM weights are judged on the gate's probe set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from handler import precision as precisions
from handler.encoder import InstructorEncoder
from handler.errors import ModelConfigError
from handler.fidelity import MIN_COSINE
from handler.int8 import Int8Linear
from handler.settings import EngineName, HandlerSettings, Precision
from tests.cases import PARITY_CASES
from tests.conftest import NATIVE_BF16_FLAGS, RunningServer, registered_model
from toolkit.build.archive import build_archive
from toolkit.build.probe_pairs import PROBE_PAIRS

PAIRS = [tuple(pair) for case in PARITY_CASES.values() for pair in case] + [
    ("Represent the question for retrieving answers:", "How do I bake sourdough bread at home?"),
    ("Represent the document for retrieval:", "The central bank raised interest rates by a quarter point."),
]


def _settings(mode: str, precision: Precision) -> HandlerSettings:
    return HandlerSettings.from_mapping({"instruction_mode": mode, "precision": precision.value})


def _encoder(model_dir: Path, mode: str, precision: Precision) -> InstructorEncoder:
    """The encoder in ``precision``, on injected flags that run bf16 (never this machine's own)."""
    return InstructorEncoder.from_folder(model_dir, _settings(mode, precision), cpu_flags=NATIVE_BF16_FLAGS)


def _cosines(model_dir: Path, mode: str, precision: Precision) -> torch.Tensor:
    exact = InstructorEncoder.from_folder(model_dir, _settings(mode, Precision.FP32)).encode(PAIRS)
    reduced = _encoder(model_dir, mode, precision).encode(PAIRS)
    assert reduced.dtype == torch.float32 and reduced.shape == exact.shape
    return torch.nn.functional.cosine_similarity(exact, reduced, dim=1)


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.INT8])
def test_tiny_instructor_vectors_stay_close_to_fp32(tiny_model_dir: Path, precision: Precision) -> None:
    cosines = _cosines(tiny_model_dir, "exclude", precision)
    assert float(cosines.min()) >= MIN_COSINE[precision], cosines


def test_minilm_bf16_keeps_the_probe_sets_vectors(minilm_dir: Path) -> None:
    """Real weights, judged on the gate's own probe set (one truth): bf16 clears its floor.

    int8 on the same probes is below its floor (the gate refuses it:
    tests/test_engines.py::test_minilm_gates_bf16_passes_and_int8_is_refused_with_its_figure).
    """
    exact = InstructorEncoder.from_folder(minilm_dir, _settings("ignore", Precision.FP32)).encode(PROBE_PAIRS)
    reduced = _encoder(minilm_dir, "ignore", Precision.BF16).encode(PROBE_PAIRS)
    cosines = torch.nn.functional.cosine_similarity(exact, reduced, dim=1)
    assert float(cosines.min()) >= MIN_COSINE[Precision.BF16], cosines


def test_reduced_precisions_really_change_the_computation(tiny_model_dir: Path) -> None:
    """Guards the tests above: a mode that silently ran fp32 would pass them trivially."""
    bf16 = _encoder(tiny_model_dir, "exclude", Precision.BF16)
    int8 = _encoder(tiny_model_dir, "exclude", Precision.INT8)
    assert next(bf16.engine.transformer.parameters()).dtype == torch.bfloat16
    assert any(isinstance(m, Int8Linear) for m in int8.engine.transformer.modules()), "no Linear layer was quantized"
    assert not any(type(m) is torch.nn.Linear for m in int8.engine.transformer.modules())
    assert all(p.dtype == torch.float32 for p in bf16.head.parameters())
    for cosines in (_cosines(tiny_model_dir, "exclude", p) for p in (Precision.BF16, Precision.INT8)):
        assert float(cosines.min()) < 1.0 - 1e-7


def test_int8_on_a_gpu_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="int8' runs on CPU only"):
        precisions.resolve(Precision.INT8, EngineName.TORCH, torch.device("cuda:0"), frozenset())


def test_bf16_on_a_cpu_without_bf16_instructions_is_refused_with_a_better_mode(tmp_path: Path) -> None:
    without = tmp_path / "cpuinfo"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert precisions.cpu_flags(without) == {"fpu", "sse", "avx2", "avx512f", "avx512_vnni"}
    assert precisions.cpu_flags(tmp_path / "missing") == frozenset()
    with_bf16 = tmp_path / "cpuinfo-bf16"
    with_bf16.write_text("flags\t: avx512f avx512_bf16\n")
    cpu = torch.device("cpu")
    for engine in EngineName:
        accepted = precisions.resolve(Precision.BF16, engine, cpu, precisions.cpu_flags(with_bf16))
        assert accepted.precision is Precision.BF16
        with pytest.raises(ModelConfigError, match=r"neither AMX nor AVX512_BF16.*Use 'int8' for speed"):
            precisions.resolve(Precision.BF16, engine, cpu, precisions.cpu_flags(without))


def test_load_dtype_follows_precision() -> None:
    assert precisions.load_dtype(Precision.BF16) is torch.bfloat16
    assert precisions.load_dtype(Precision.FP32) is torch.float32
    assert precisions.load_dtype(Precision.INT8) is torch.float32


def test_int8_linear_matches_float_linear_closely() -> None:
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    inputs = torch.randn(3, 5, 64, generator=generator)
    inputs[0, 0] *= 50  # an outlier token must not flatten the other tokens (per-token scales)
    with torch.inference_mode():
        expected = linear(inputs)
        actual = Int8Linear(linear)(inputs)
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    cosines = torch.nn.functional.cosine_similarity(expected.reshape(-1, 48), actual.reshape(-1, 48), dim=1)
    assert float(cosines.min()) > 0.999
    assert Int8Linear(linear).weight.dtype == torch.int8


@pytest.mark.integration
def test_served_precisions_answer_close_to_fp32(
    torchserve: RunningServer, tiny_model_dir: Path, tiny_encoder: InstructorEncoder
) -> None:
    """bf16 and int8 archives served by the shared TorchServe: vectors close to the in-process fp32 ones."""
    answers = {}
    log_before = len(torchserve.model_log())
    for precision in (Precision.BF16, Precision.INT8):
        name = f"tiny-{precision.value}"
        build_archive(tiny_model_dir, torchserve.model_store, _settings("exclude", precision), name=name)
        with registered_model(torchserve, f"{name}.mar", name, initial_workers=1):
            response = torchserve.predict(name, {"inputs": [list(pair) for pair in PAIRS]})
        assert response.status_code == 200, response.text
        answers[precision] = torch.tensor(response.json())
    log = torchserve.model_log()[log_before:]
    exact = tiny_encoder.encode(PAIRS)
    for precision, vectors in answers.items():
        cosines = torch.nn.functional.cosine_similarity(exact, vectors, dim=1)
        assert float(cosines.min()) >= MIN_COSINE[precision], (precision, cosines)
    assert "'precision': 'bf16'" in log and "'precision': 'int8'" in log
