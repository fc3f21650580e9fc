"""Engines: the transformer's forward pass behind one small interface, and what each can do.

An engine takes a padded batch of token ids and its attention mask and returns the last
hidden state. Everything that makes a vector INSTRUCTOR's (tokenizing, the per-row
instruction mask, pooling, Dense, Normalize) stays in :mod:`handler.encoder` (the poolers in
:mod:`handler.pooling`), shared and float32, so every engine gets the same semantics from one place.

Callers ask an engine's :class:`EngineSpec` what it can do (devices, whether it needs the torch
weights, its build-time exporter, its int8 schemes, its micro-batch defaults), never which
engine it is, as text-embeddings-inference's core asks its backend. A new engine is a runtime
module (``load``), an exporter module (``staged_form``, ``export``, ``configure``: run at build,
never by workers) and one :data:`ENGINES` entry.

Engines are imported by name, only when an archive asks for them: an optional runtime that
is not installed never breaks workers that do not use it, and one that is asked for but
missing fails with the install hint. Module names carry an ``_engine`` suffix so that none
shadows the library it wraps.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import torch

from handler.errors import EngineInputError, EngineStartError
from handler.settings import EngineName, Precision

if TYPE_CHECKING:
    from handler.encoder import InstructorEncoder

# Where the builder writes the exported encoder, relative to the model folder.
OPENVINO_DIR = "openvino"
OPENVINO_MODEL = "encoder.xml"
# Beside the exported model: how to compile it ({"int8_scheme", "dynamic_quantization_group_size"}).
OPENVINO_ENGINE_CONFIG = "engine.json"
# int8 schemes of the OpenVINO engine: NNCF-quantized weights and activations (calibrated at build),
# or int8 weights with activations quantized per group at run time by the CPU plugin.
STATIC_INT8 = "static"
DYNAMIC_INT8 = "dynamic"
# The engine that computes the fp32 reference vectors every reduced mode is measured against.
REFERENCE_ENGINE = EngineName.TORCH


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What an engine can do; every decision outside ``handler/engines`` reads this, not the name.

    ``devices``: torch device types it runs on (a GPU TorchServe assigns is ignored otherwise).
    ``needs_torch_weights``: the archive keeps the transformer's own weights (else only its export).
    ``reduced_in_archive``: precisions whose archive holds no exact fp32 model (no fp32 fallback).
    ``int8_schemes``: the build-time int8 schemes a builder chooses between (none: one int8 mode).
    ``bf16_needs_native_cpu``: on a CPU without native bf16 it silently computes f32 for bf16.
    ``threads_fixed_at_load``: its thread count cannot follow the worker count after scaling.
    ``micro_batch``: measured (padding %, rows) per precision where they differ from the defaults.
    """

    name: EngineName
    runtime: str
    exporter: str
    package: str
    install_hint: str
    devices: frozenset[str]
    needs_torch_weights: bool
    reduced_in_archive: frozenset[Precision]
    int8_schemes: tuple[str, ...] = ()
    bf16_needs_native_cpu: bool = False
    threads_fixed_at_load: bool = False
    micro_batch: Mapping[Precision, tuple[int, int]] = dataclasses.field(default_factory=dict)

    @property
    def computes_reference(self) -> bool:
        """Whether its fp32 is the reference itself (the model's own modules)."""
        return self.name is REFERENCE_ENGINE

    def runs_on(self, device: torch.device) -> bool:
        return device.type in self.devices

    def exporter_module(self) -> ModuleType:
        """The build-time half: ``staged_form``, ``export`` and ``configure`` (see :class:`Exporter`)."""
        return importlib.import_module(self.exporter)


ENGINES: dict[EngineName, EngineSpec] = {
    EngineName.TORCH: EngineSpec(
        EngineName.TORCH,
        runtime="handler.engines.torch_engine",
        exporter="handler.engines.torch_export",
        package="torch",
        install_hint="pip install torch==2.13.0",
        devices=frozenset({"cpu", "cuda"}),
        needs_torch_weights=True,
        reduced_in_archive=frozenset({Precision.BF16}),
    ),
    EngineName.OPENVINO: EngineSpec(
        EngineName.OPENVINO,
        runtime="handler.engines.openvino_engine",
        exporter="handler.engines.openvino_export",
        package="openvino",
        install_hint="pip install openvino==2026.4.1 (see requirements-serve.txt)",
        devices=frozenset({"cpu"}),
        needs_torch_weights=False,
        reduced_in_archive=frozenset({Precision.INT8}),
        int8_schemes=(STATIC_INT8, DYNAMIC_INT8),
        bf16_needs_native_cpu=True,
        threads_fixed_at_load=True,
        # `python -m toolkit.bench.batching_sweep` on instructor-large's shape, 2-core Xeon with AMX
        # (docs/engines.md, "Micro-batch limits"): a 40% bound gained 3-6% on batches of 8 single-pair
        # requests; 8 rows kept 2 x 32-pair batches as fast (32 rows with a loose bound lost 12-35%).
        micro_batch={Precision.BF16: (40, 8), Precision.INT8: (40, 8)},
    ),
}


def engine_spec(name: EngineName) -> EngineSpec:
    """What engine ``name`` can do."""
    return ENGINES[name]


class Engine(Protocol):
    """What the encoder needs from a runtime."""

    name: EngineName
    precision: Precision

    def last_hidden_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(rows, tokens) int64 ids and mask in, (rows, tokens, hidden) states out (any float dtype)."""
        ...


class ExportMode(Protocol):
    """The mode a build stages a model for (``toolkit.build.mode_choice.Candidate`` is one)."""

    precision: Precision
    scheme: str | None
    group: int | None
    smooth_quant_alpha: float | None
    accuracy_control: bool


@dataclasses.dataclass(frozen=True)
class ExportInputs:
    """What an exporter may need beyond the model folder, the fp32 reference loaded only if asked for.

    ``calibration``: int8 calibration pairs; ``validation``: the pairs accuracy control measures on.
    """

    reference: Callable[[], InstructorEncoder]
    calibration: Sequence[tuple[str, str]]
    validation: Sequence[tuple[str, str]]


class Exporter(Protocol):
    """An engine's build-time module (its functions, as a module provides them)."""

    def staged_form(self, mode: ExportMode) -> str:
        """What the staged model holds for ``mode``: the builder re-exports only when this changes."""
        ...

    def export(self, model_dir: Path, staged_model: Path, mode: ExportMode, inputs: ExportInputs) -> object:
        """Bring a freshly staged copy of ``model_dir`` into ``mode``'s form; returns a report or None."""
        ...

    def configure(self, staged_model: Path, mode: ExportMode) -> None:
        """Write what the worker must know to run ``mode`` that is not in the exported files."""
        ...


class EngineUnavailableError(EngineStartError):
    """The archive asks for an engine whose runtime is not installed; the message has the install hint."""


def check_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
    """Refuse a batch no engine computes: ids and mask must be the same (rows, tokens) shape, integers.

    Raises:
        EngineInputError: the shapes or dtypes are wrong (a caller's bug, never a client's input).
    """
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise EngineInputError(
            f"engine input: ids {tuple(input_ids.shape)} and mask {tuple(attention_mask.shape)} must both be "
            "(rows, tokens)"
        )
    if input_ids.is_floating_point() or attention_mask.is_floating_point():
        raise EngineInputError(f"engine input: ids and mask must be integers, not {input_ids.dtype}")


def load_engine(
    name: EngineName, model_root: Path, precision: Precision, device: torch.device, threads: int | None = None
) -> Engine:
    """Load engine ``name`` for the model folder ``model_root`` at an already resolved precision.

    Raises:
        EngineUnavailableError: the engine's runtime is not installed.
        EngineStartError (a ModelConfigError): the model folder lacks what the engine needs.
    """
    spec = engine_spec(name)
    try:
        module = importlib.import_module(spec.runtime)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] != spec.package:
            raise
        raise EngineUnavailableError(
            f"engine '{name.value}' needs the '{spec.package}' package: {spec.install_hint}"
        ) from err
    return module.load(model_root, precision, device, threads)
