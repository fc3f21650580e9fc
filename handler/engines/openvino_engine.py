"""The OpenVINO engine: the encoder exported into the archive at build time, run on CPU.

The worker only reads ``openvino/encoder.xml`` (written by :mod:`toolkit.export`); it never
exports. The precision is passed to OpenVINO explicitly: on a CPU with AMX or AVX512_BF16,
OpenVINO computes in bf16 unless told ``f32``, so fp32 would silently not be exact. int8
archives hold an NNCF-quantized model; its unquantized operations run in f32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import torch

from handler.engines import OPENVINO_DIR, OPENVINO_MODEL
from handler.errors import EngineOutOfMemory, ModelConfigError
from handler.settings import EngineName, Precision

# What OpenVINO's CPU plugin says when an allocation fails (src/plugins/intel_cpu/src/cpu_memory.cpp);
# it raises a plain RuntimeError.
ALLOCATION_FAILURE = "Failed to allocate"
# The inference precision OpenVINO's CPU plugin is told per mode.
INFERENCE_PRECISION = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "f32"}


class OpenVinoEngine:
    """A compiled OpenVINO model and one infer request (a worker runs one batch at a time)."""

    name = EngineName.OPENVINO

    def __init__(self, compiled: ov.CompiledModel, precision: Precision) -> None:
        self.precision = precision
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def last_hidden_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output for one padded batch, as a float32 CPU tensor.

        Raises:
            EngineOutOfMemory: the CPU plugin could not allocate what the batch needs.
        """
        inputs = {
            "input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64),
        }
        try:
            self.request.infer(inputs, share_inputs=True)
        except RuntimeError as err:
            if ALLOCATION_FAILURE not in str(err):
                raise
            raise EngineOutOfMemory(str(err)) from err
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())

    def describe(self) -> dict[str, str]:
        """What OpenVINO was told and what it runs with, for the worker log."""
        return {"inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}


def model_path(model_root: Path) -> Path:
    """Where the builder writes the exported encoder inside a model folder."""
    return model_root / OPENVINO_DIR / OPENVINO_MODEL


def compile_model(xml: Path, precision: Precision, threads: int | None = None) -> ov.CompiledModel:
    """Compile the exported encoder for this CPU at ``precision`` (told explicitly)."""
    config: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    return core.compile_model(core.read_model(xml), "CPU", config)


def load(model_root: Path, precision: Precision, device: torch.device, threads: int | None = None) -> OpenVinoEngine:
    """The OpenVINO engine for a model folder staged by the archive builder.

    Raises:
        ModelConfigError: the folder holds no exported encoder, or the device is not the CPU.
    """
    if device.type != "cpu":
        raise ModelConfigError(f"engine 'openvino' runs on CPU only, not {device}")
    xml = model_path(model_root)
    if not xml.is_file():
        raise ModelConfigError(
            f"{xml} is missing: engine 'openvino' needs the encoder exported at build time "
            "(build the archive with --engine openvino)"
        )
    return OpenVinoEngine(compile_model(xml, precision, threads), precision)
