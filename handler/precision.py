"""Precision modes: which mode a worker runs, decided once at start from the device and CPU flags.

Pooling, the Dense head and the returned vectors are always float32; only the transformer
(where the compute is) changes format. Measured on 2-core CPUs (docs/benchmarks): bf16 is about
4x faster than fp32 where the CPU has bf16 instructions (AVX512_BF16 or AMX) and about 3x
*slower* where it has not (every operand is converted), so bf16 is refused there. int8 needs
no special instructions beyond what the integer kernels use (VNNI where present).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from handler.errors import ModelConfigError
from handler.settings import EngineName, Precision

logger = logging.getLogger(__name__)

# CPU feature flags (Linux /proc/cpuinfo) under which bf16 matrix multiplies run natively.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Flags worth printing next to a measurement or a decision.
REPORTED_CPU_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


@dataclasses.dataclass(frozen=True)
class ResolvedPrecision:
    """The mode a worker runs and why (for the worker log and describe)."""

    requested: Precision
    precision: Precision
    reason: str


def load_dtype(precision: Precision) -> torch.dtype:
    """The dtype the torch engine loads (and, for bf16, stores) the transformer's weights in."""
    return torch.bfloat16 if precision is Precision.BF16 else torch.float32


def has_native_bf16(flags: frozenset[str]) -> bool:
    """Whether a CPU with these flags multiplies bf16 matrices in hardware."""
    return bool(flags & BF16_CPU_FLAGS)


def resolve(
    requested: Precision, engine: EngineName, device: torch.device, flags: frozenset[str] | None = None
) -> ResolvedPrecision:
    """The precision to run: ``auto`` decided, impossible or slow combinations refused.

    ``flags`` are the CPU's feature flags (read from this machine when not given; tests inject them).
    Where the platform lists no flags at all, an explicit bf16 is trusted and ``auto`` picks fp32.

    Raises:
        ModelConfigError: int8 on a GPU; OpenVINO on a GPU; bf16 on a CPU without native bf16.
    """
    if device.type != "cpu" and engine is not EngineName.TORCH:
        raise ModelConfigError(f"engine '{engine.value}' runs on CPU only; use engine 'torch' on {device}")
    if device.type != "cpu":
        if requested is Precision.INT8:
            raise ModelConfigError(
                f"precision 'int8' runs on CPU only; the worker was placed on {device}. Use 'bf16' or 'auto' on GPUs."
            )
        if requested is Precision.AUTO:
            return ResolvedPrecision(requested, Precision.BF16, f"auto: {device} runs bf16 natively")
        return ResolvedPrecision(requested, requested, f"as configured, on {device}")
    flags = cpu_flags() if flags is None else flags
    native = sorted(flags & BF16_CPU_FLAGS)
    if requested is Precision.AUTO:
        if native:
            reason = f"auto: the CPU runs bf16 natively ({', '.join(native)})"
            return ResolvedPrecision(requested, Precision.BF16, reason)
        return ResolvedPrecision(requested, Precision.FP32, "auto: the CPU has neither AMX nor AVX512_BF16")
    if requested is Precision.BF16 and flags and not native:
        raise ModelConfigError(
            "precision 'bf16' refused: this CPU has neither AMX nor AVX512_BF16, so bf16 would be emulated "
            "and about 3x slower than fp32 (measured). Use 'int8' for speed, or 'fp32' / 'auto' for exact vectors."
        )
    return ResolvedPrecision(requested, requested, "as configured, on CPU")


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


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, or 'unknown'."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown"
