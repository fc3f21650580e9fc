"""The OpenVINO engine: the encoder exported into the archive at build time, run on CPU.

The worker only reads ``openvino/encoder.xml`` (written by :mod:`handler.engines.openvino_export`); it never
exports. The precision is passed to OpenVINO explicitly: on a CPU with AMX or AVX512_BF16,
OpenVINO computes in bf16 unless told ``f32``, so fp32 would silently not be exact. int8
archives hold an NNCF-quantized model; its unquantized operations run in f32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

from handler.engines import DYNAMIC_INT8, OPENVINO_DIR, OPENVINO_ENGINE_CONFIG, OPENVINO_MODEL, check_batch
from handler.errors import EngineOutOfMemory, EngineStartError
from handler.precision import cpu_flags, has_native_bf16
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
            EngineInputError: ids and mask are not one (rows, tokens) integer shape.
        """
        check_batch(input_ids, attention_mask)
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
        described = {"inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}
        described["dynamic_quantization_group_size"] = str(
            self.compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")
        )
        return described


def model_path(model_root: Path) -> Path:
    """Where the builder writes the exported encoder inside a model folder."""
    return model_root / OPENVINO_DIR / OPENVINO_MODEL


def engine_config(model_root: Path) -> dict[str, Any]:
    """How the builder said to compile the export (``openvino/engine.json``), or {} (fp32, bf16, static int8)."""
    path = model_root / OPENVINO_DIR / OPENVINO_ENGINE_CONFIG
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EngineStartError(f"{path} is not valid JSON: {err}") from None


def compile_model(
    xml: Path, precision: Precision, threads: int | None = None, config_file: dict[str, Any] | None = None
) -> ov.CompiledModel:
    """Compile the exported encoder for this CPU at ``precision`` (told explicitly).

    A ``dynamic`` int8 export (int8 weights) gets its run-time activation group size, and computes
    what stays unquantized in bf16 where the CPU runs bf16 natively, f32 elsewhere.
    """
    config: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
        "PERFORMANCE_HINT": "LATENCY",
    }
    scheme = config_file or {}
    if precision is Precision.INT8 and scheme.get("int8_scheme") == DYNAMIC_INT8:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(int(scheme["dynamic_quantization_group_size"]))
        config["INFERENCE_PRECISION_HINT"] = "bf16" if has_native_bf16(cpu_flags()) else "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    return core.compile_model(core.read_model(xml), "CPU", config)


def load(model_root: Path, precision: Precision, device: torch.device, threads: int | None = None) -> OpenVinoEngine:
    """The OpenVINO engine for a model folder staged by the archive builder.

    Raises:
        EngineStartError: the folder holds no exported encoder, or the device is not the CPU.
    """
    if device.type != "cpu":
        raise EngineStartError(f"engine 'openvino' runs on CPU only, not {device}")
    xml = model_path(model_root)
    if not xml.is_file():
        raise EngineStartError(
            f"{xml} is missing: engine 'openvino' needs the encoder exported at build time "
            "(build the archive with --engine openvino)"
        )
    return OpenVinoEngine(compile_model(xml, precision, threads, engine_config(model_root)), precision)
