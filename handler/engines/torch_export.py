"""The torch engine's build-time half: the staged weights, stored in bf16 for bf16 archives.

A worker that loads safetensors already in the dtype it computes in keeps them memory-mapped:
no conversion at start-up, and every worker of the model shares the same page-cache pages.
Only the transformer's files (the model folder's top level) change; the Dense head stays
float32 because pooling and the head run in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from handler.engines import ExportInputs, ExportMode
from handler.precision import load_dtype
from handler.settings import Precision

BIN_WEIGHTS = "pytorch_model.bin"


def _converted(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {
        name: tensor.to(dtype).contiguous() if tensor.is_floating_point() else tensor.contiguous()
        for name, tensor in state.items()
    }


def store_transformer_weights(model_root: Path, dtype: torch.dtype) -> list[Path]:
    """Rewrite the top-level weight files of a *staged copy* in ``dtype``; returns the files written.

    Each file is replaced, never written through: staged files may be hard links to the
    user's model. A ``pytorch_model.bin`` without safetensors beside it becomes
    ``model.safetensors``. Sharded checkpoints keep their index (names do not change).
    """
    written = []
    safetensors_files = sorted(model_root.glob("*.safetensors"))
    for path in safetensors_files:
        state = _converted(load_file(str(path)), dtype)
        path.unlink()
        save_file(state, str(path), metadata={"format": "pt"})
        written.append(path)
    binary = model_root / BIN_WEIGHTS
    if not safetensors_files and binary.is_file():
        state = _converted(torch.load(binary, map_location="cpu", weights_only=True), dtype)
        target = model_root / "model.safetensors"
        save_file(_untied(state), str(target), metadata={"format": "pt"})
        binary.unlink()
        written.append(target)
    return written


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings in .bin files): copy repeats."""
    seen: set[int] = set()
    untied = {}
    for name, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        untied[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return untied


def staged_form(mode: ExportMode) -> str:
    """The weights ``mode`` needs: the model's own, or stored in bf16."""
    return "bf16 weights" if mode.precision is Precision.BF16 else "weights"


def export(model_dir: Path, staged_model: Path, mode: ExportMode, inputs: ExportInputs) -> None:
    """Store the staged weights in bf16 for bf16; every other mode serves the model's own files."""
    if mode.precision is Precision.BF16:
        store_transformer_weights(staged_model, load_dtype(Precision.BF16))


def configure(staged_model: Path, mode: ExportMode) -> None:
    """Nothing beyond the weights: the handler settings say the rest."""
