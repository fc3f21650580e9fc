"""Each worker measures its own mode at start against the archive's fp32 probe vectors, and acts on it.

In-process: a real :class:`InstructorHandler` with TorchServe's own ``Context`` over no-archive
builds of the tiny model (and of the outlier model, built to fail reduced precision). CPU flags
are injected through ``INSTRUCTOR_CPU_FLAGS``, so what is decided never depends on this machine.
Served: an OpenVINO bf16 archive built on flags without bf16 (the gate cannot certify it), served
by a real TorchServe whose workers run bf16, where the worker's own measurement decides.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.errors import ModelConfigError
from handler.fidelity import FIDELITY_FILE, NOT_MEASURED_ON_ENGINE, REFERENCE_FILE
from handler.precision import CPU_FLAGS_ENV, cpu_flags, has_native_bf16
from handler.settings import HandlerSettings, Precision
from handler.torchserve_handler import InstructorHandler
from tests.conftest import NATIVE_BF16_FLAGS
from tests.test_handler import make_context
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.serve.scratch_server import running_server

BF16_ENV = ",".join(sorted(NATIVE_BF16_FLAGS))
NO_BF16_ENV = "avx2,avx512f"
PAIRS = [("Represent the Science title:", "Parton energy loss in QCD matter."), ("", "A plain sentence.")]


def settings(precision: str, engine: str = "torch") -> HandlerSettings:
    return HandlerSettings.from_mapping({"instruction_mode": "exclude", "precision": precision, "engine": engine})


def built(model_dir: Path, store: Path, precision: str, engine: str = "torch", force: bool = False) -> Path:
    name = f"{engine}-{precision}{'-forced' if force else ''}"
    return build_archive(
        model_dir, store, settings(precision, engine), name=name, archive_format="no-archive", force=force
    )


def started(archive: Path, monkeypatch: pytest.MonkeyPatch, flags: str = BF16_ENV) -> InstructorHandler:
    monkeypatch.setenv(CPU_FLAGS_ENV, flags)
    handler = InstructorHandler()
    handler.initialize(make_context(archive, 1))
    return handler


def tilt_reference(archive: Path, cosine: float = 0.995) -> None:
    """Rotate every stored fp32 vector to ``cosine`` from itself: no engine can agree past it."""
    path = archive / REFERENCE_FILE
    reference = json.loads(path.read_text())
    vectors = torch.tensor(reference["vectors"])
    noise = torch.randn(vectors.shape, generator=torch.Generator().manual_seed(0))
    noise -= (noise * vectors).sum(dim=1, keepdim=True) * vectors
    noise = torch.nn.functional.normalize(noise, dim=1)
    tilted = cosine * vectors + (1 - cosine**2) ** 0.5 * noise
    path.write_text(json.dumps(reference | {"vectors": tilted.tolist()}))


def check_of(handler: InstructorHandler) -> dict:
    return handler.describe_handle()["fidelity_check"]


def test_gated_archives_carry_the_probe_vectors(tmp_path: Path, tiny_model_dir: Path) -> None:
    archive = built(tiny_model_dir, tmp_path, "auto")
    reference = json.loads((archive / REFERENCE_FILE).read_text())
    expected = InstructorEncoder.from_folder(tiny_model_dir, settings("fp32")).encode(
        [tuple(pair) for pair in reference["pairs"]]
    )
    assert float((torch.tensor(reference["vectors"]) - expected).abs().max()) <= 1e-6
    assert not (built(tiny_model_dir, tmp_path, "fp32") / REFERENCE_FILE).exists()


def test_auto_keeps_bf16_where_its_own_measurement_clears_the_floor(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = started(built(tiny_model_dir, tmp_path, "auto"), monkeypatch)
    check = check_of(handler)
    assert handler.encoder.resolved.precision is Precision.BF16 and not check["fallback_to_fp32"]
    assert check["measured_at_start"]["min_cosine"] >= 0.999 and "measured at start" in check["reason"]


def test_auto_falls_back_to_exact_fp32_when_its_own_measurement_is_below_the_floor(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: InstructorEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = built(tiny_model_dir, tmp_path, "auto")
    tilt_reference(archive)
    handler = started(archive, monkeypatch)
    check = check_of(handler)
    assert handler.encoder.resolved.precision is Precision.FP32 and check["fallback_to_fp32"]
    assert "below the floor 0.999: serving fp32 instead" in check["reason"]
    assert check["measured_at_start"]["min_cosine"] < 0.999
    assert handler.describe_handle()["precision"] == "fp32"
    assert float((handler.encoder.encode(PAIRS) - tiny_encoder.encode(PAIRS)).abs().max()) <= 1e-6


def test_explicit_bf16_below_the_floor_without_exact_fp32_is_refused(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch bf16 archive stores its weights in bf16: it cannot fall back to exact fp32."""
    archive = built(tiny_model_dir, tmp_path, "bf16")
    tilt_reference(archive)
    with pytest.raises(ModelConfigError, match=r"below the floor 0\.999, and this archive cannot compute fp32"):
        started(archive, monkeypatch)


def test_a_mode_forced_at_build_is_kept_and_says_so(
    tmp_path: Path, outlier_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = started(built(outlier_model_dir, tmp_path, "bf16", force=True), monkeypatch)
    check = check_of(handler)
    assert handler.encoder.resolved.precision is Precision.BF16
    assert "forced at build" in check["reason"] and check["measured_at_start"]["min_cosine"] < 0.999


def test_auto_with_a_forced_below_floor_verdict_runs_fp32(
    tmp_path: Path, outlier_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = built(outlier_model_dir, tmp_path, "auto", force=True)
    assert json.loads((archive / FIDELITY_FILE).read_text())["forced"]
    handler = started(archive, monkeypatch)
    assert handler.encoder.resolved.precision is Precision.FP32 and check_of(handler)["fallback_to_fp32"]


@pytest.mark.parametrize(("precision", "engine"), [("bf16", "torch"), ("int8", "torch"), ("int8", "openvino")])
def test_reduced_archive_without_a_verdict_is_refused_at_load(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, precision: str, engine: str
) -> None:
    """A hand-built (or hand-edited) reduced-precision archive never runs silently."""
    archive = built(tiny_model_dir, tmp_path, precision, engine)
    (archive / FIDELITY_FILE).unlink()
    (archive / REFERENCE_FILE).unlink()
    with pytest.raises(ModelConfigError, match=rf"precision '{precision}' .* carries no fidelity verdict.*refused"):
        started(archive, monkeypatch)


def test_auto_without_a_verdict_runs_fp32(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = built(tiny_model_dir, tmp_path, "auto")
    (archive / FIDELITY_FILE).unlink()
    (archive / REFERENCE_FILE).unlink()
    handler = started(archive, monkeypatch)
    assert handler.encoder.resolved.precision is Precision.FP32
    assert "no fidelity verdict" in check_of(handler)["reason"]


def test_gate_never_certifies_openvino_bf16_with_a_stand_in(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CPU_FLAGS_ENV, NO_BF16_ENV)
    figures = json.loads((built(tiny_model_dir, tmp_path, "bf16", "openvino") / FIDELITY_FILE).read_text())
    assert figures["passed"] is None and figures["verdict"] == NOT_MEASURED_ON_ENGINE
    assert not figures["measured_on_engine"] and "stand-in" in figures["measured_with"]


@pytest.mark.integration
def test_served_openvino_bf16_built_without_bf16_is_decided_by_the_workers_measurement(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: InstructorEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built on flags without bf16 (not certified), served with flags that run bf16: the worker measures itself.

    Where this CPU really computes bf16 (AVX512_BF16 or AMX), OpenVINO bf16 on the tiny model is
    below the floor (0.9983 measured) and the worker falls back to fp32; elsewhere OpenVINO computes
    f32 under the bf16 hint and the measurement clears the floor. Either way the worker's own
    figure, shown in describe, is what decides.
    """
    store = tmp_path / "store"
    monkeypatch.setenv(CPU_FLAGS_ENV, NO_BF16_ENV)
    build_archive(tiny_model_dir, store, settings("bf16", "openvino"), WorkerConfig(), name="ov-bf16")
    monkeypatch.setenv(CPU_FLAGS_ENV, BF16_ENV)
    with running_server(tmp_path / "server", store) as server:
        server.management.register("ov-bf16.mar", initial_workers=1)
        response = server.predict("ov-bf16", {"inputs": [list(pair) for pair in PAIRS]})
        (described,) = server.management.describe("ov-bf16", customized=True)
        log = server.model_log()
    assert response.status_code == 200, response.text
    details = described["customizedMetadata"]
    measured = details["fidelity_check"]["measured_at_start"]
    assert details["fidelity"]["verdict"] == NOT_MEASURED_ON_ENGINE
    kept = measured["min_cosine"] >= 0.999
    assert details["precision"] == ("bf16" if kept else "fp32")
    assert details["fidelity_check"]["fallback_to_fp32"] is not kept
    if has_native_bf16(cpu_flags(Path("/proc/cpuinfo"))):
        assert not kept and "serving fp32 instead" in log
        vectors = torch.tensor(response.json())
        assert float((vectors - tiny_encoder.encode(PAIRS)).abs().max()) <= 1e-5
