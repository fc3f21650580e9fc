"""Engines: the transformer's forward pass behind one small interface.

An engine takes a padded batch of token ids and its attention mask and returns the last
hidden state. Everything that makes a vector INSTRUCTOR's (tokenizing, the per-row
instruction mask, pooling, Dense, Normalize) stays in :mod:`handler.encoder`, shared and
float32, so every engine gets the same semantics from one place.

Engines are imported by name, only when an archive asks for them: an optional runtime that
is not installed never breaks workers that do not use it, and one that is asked for but
missing fails with the install hint. Module names carry an ``_engine`` suffix so that none
shadows the library it wraps.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import torch

from handler.errors import ModelConfigError
from handler.settings import EngineName, Precision

# Engine name -> (module implementing ``load``, the package it needs, how to install it).
ENGINE_MODULES: dict[EngineName, tuple[str, str, str]] = {
    EngineName.TORCH: ("handler.engines.torch_engine", "torch", "pip install torch==2.13.0"),
    EngineName.OPENVINO: (
        "handler.engines.openvino_engine",
        "openvino",
        "pip install openvino==2026.4.1 (see requirements-serve.txt)",
    ),
}
# Where the builder writes the exported encoder, relative to the model folder.
OPENVINO_DIR = "openvino"
OPENVINO_MODEL = "encoder.xml"
# Beside the exported model: how to compile it ({"int8_scheme", "dynamic_quantization_group_size"}).
OPENVINO_ENGINE_CONFIG = "engine.json"
# int8 schemes of the OpenVINO engine: NNCF-quantized weights and activations (calibrated at build),
# or int8 weights with activations quantized per group at run time by the CPU plugin.
STATIC_INT8 = "static"
DYNAMIC_INT8 = "dynamic"


class Engine(Protocol):
    """What the encoder needs from a runtime."""

    name: EngineName
    precision: Precision

    def last_hidden_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(rows, tokens) int64 ids and mask in, (rows, tokens, hidden) states out (any float dtype)."""
        ...


class EngineUnavailableError(ModelConfigError):
    """The archive asks for an engine whose runtime is not installed; the message has the install hint."""


def load_engine(
    name: EngineName, model_root: Path, precision: Precision, device: torch.device, threads: int | None = None
) -> Engine:
    """Load engine ``name`` for the model folder ``model_root`` at an already resolved precision.

    Raises:
        EngineUnavailableError: the engine's runtime is not installed.
        ModelConfigError: the model folder lacks what the engine needs.
    """
    module_name, package, hint = ENGINE_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != package:
            raise
        raise EngineUnavailableError(f"engine '{name.value}' needs the '{package}' package: {hint}") from err
    return module.load(model_root, precision, device, threads)
