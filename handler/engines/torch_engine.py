"""The torch engine: the model's own PyTorch modules (GPUs, and the fp32 reference).

T5 models load as ``T5EncoderModel`` (the decoder is never needed). Weights come from
safetensors when the folder has them (memory-mapped: workers share the pages when the file is
already in the serving dtype); transformers reads ``.bin`` with weights_only. bf16 keeps the
weights in bf16; int8 swaps every Linear for :class:`handler.int8.Int8Linear` (CPU only).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, T5EncoderModel

from handler.engines import check_batch
from handler.errors import EngineOutOfMemory, EngineStartError
from handler.int8 import quantize_linears
from handler.precision import load_dtype
from handler.settings import EngineName, Precision

# What torch's CPU allocator says when an allocation fails (c10/core/impl/alloc_cpu.cpp); it raises a
# plain RuntimeError, not torch.OutOfMemoryError (which only CUDA and other accelerators raise).
CPU_ALLOCATION_FAILURE = "DefaultCPUAllocator: can't allocate memory"


@contextlib.contextmanager
def torch_out_of_memory() -> Iterator[None]:
    """Turn torch's allocation failures (CUDA's typed error, the CPU allocator's message) into EngineOutOfMemory."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        raise EngineOutOfMemory(str(err)) from err
    except RuntimeError as err:
        if CPU_ALLOCATION_FAILURE not in str(err):
            raise
        raise EngineOutOfMemory(str(err)) from err


class TorchEngine:
    """A transformers encoder on ``device``, in the dtype of its precision."""

    name = EngineName.TORCH

    def __init__(self, transformer: torch.nn.Module, precision: Precision, device: torch.device) -> None:
        self.precision = precision
        self.device = device
        transformer = transformer.to(device).eval()
        self.transformer = quantize_linears(transformer) if precision is Precision.INT8 else transformer

    def last_hidden_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output for one padded batch, on the engine's device.

        Raises:
            EngineOutOfMemory: the device could not allocate what the batch needs.
            EngineInputError: ids and mask are not one (rows, tokens) integer shape.
        """
        check_batch(input_ids, attention_mask)
        with torch_out_of_memory():
            ids, mask = input_ids.to(self.device), attention_mask.to(self.device)
            return self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state


def load_transformer(model_root: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The folder's transformer (encoder only for T5) from local files, in ``dtype``.

    Raises:
        EngineStartError: transformers cannot load the folder.
    """
    load_args = {"local_files_only": True}
    try:
        config = AutoConfig.from_pretrained(model_root, **load_args)
        model_class = T5EncoderModel if config.model_type == "t5" else AutoModel
        return model_class.from_pretrained(model_root, dtype=dtype, **load_args)
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as err:
        # Unreadable config, weights that do not fit the config, a truncated or non-torch
        # pytorch_model.bin (a git-lfs pointer): all say the folder is unusable.
        raise EngineStartError(f"{model_root}: cannot load the transformer: {err}") from err


def load(model_root: Path, precision: Precision, device: torch.device, threads: int | None = None) -> TorchEngine:
    """The torch engine for a model folder (``threads`` is set process-wide by the handler)."""
    return TorchEngine(load_transformer(model_root, load_dtype(precision)), precision, device)
