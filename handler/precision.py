"""Precision modes: which dtype the transformer loads in, and int8 quantization on CPU.

Pooling, the Dense head and the returned vectors are always float32; only the transformer
(where the compute is) changes format. Measured on 2-core CPUs: bf16 is about 4x faster than
fp32 where the CPU has bf16 instructions (AVX512_BF16 or AMX) and about 3x *slower* where it
has not (oneDNN then converts every operand). int8 (:mod:`handler.int8`) needs no special
instructions beyond what oneDNN's integer kernels use (VNNI where present).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from handler.errors import ModelConfigError
from handler.int8 import quantize_linears
from handler.settings import Precision

logger = logging.getLogger(__name__)

# CPU feature flags (Linux /proc/cpuinfo) under which bf16 matrix multiplies run natively.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def load_dtype(precision: Precision) -> torch.dtype:
    """The dtype the transformer's weights are loaded (and, for bf16, stored) in."""
    return torch.bfloat16 if precision is Precision.BF16 else torch.float32


def check_device(precision: Precision, device: torch.device, flags: frozenset[str] | None = None) -> None:
    """Refuse combinations that cannot run; warn where bf16 will be slow.

    ``flags`` are the CPU's feature flags (read from the machine when not given).

    Raises:
        ModelConfigError: int8 was asked for on a GPU (dynamic quantization is CPU-only).
    """
    if precision is Precision.INT8 and device.type != "cpu":
        raise ModelConfigError(
            f"precision 'int8' runs on CPU only (dynamic quantization); the worker was placed on {device}. "
            "Use precision 'bf16' on GPUs."
        )
    flags = cpu_flags() if flags is None else flags
    if precision is Precision.BF16 and device.type == "cpu" and flags and not flags & BF16_CPU_FLAGS:
        logger.warning(
            "precision 'bf16' on a CPU without AVX512_BF16/AMX: bf16 is emulated and slower than fp32 here; "
            "prefer 'int8' (or 'fp32') on this machine"
        )


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags, or an empty set where the platform does not list them."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def apply(transformer: torch.nn.Module, precision: Precision, device: torch.device) -> torch.nn.Module:
    """The transformer ready to run at ``precision`` on ``device`` (already loaded in :func:`load_dtype`)."""
    check_device(precision, device)
    transformer = transformer.to(device).eval()
    if precision is Precision.INT8:
        return quantize_linears(transformer)
    return transformer
