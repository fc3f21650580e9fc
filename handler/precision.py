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
import os
from pathlib import Path

import torch

from handler.engines import engine_spec
from handler.errors import ModelConfigError
from handler.settings import EngineName, Precision

logger = logging.getLogger(__name__)

# CPU feature flags (Linux /proc/cpuinfo) under which bf16 matrix multiplies run natively.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Comma-separated CPU flags that replace /proc/cpuinfo's (tests, and operators reproducing another
# machine's decisions); set in the server's environment it reaches every worker.
CPU_FLAGS_ENV = "INSTRUCTOR_CPU_FLAGS"
# CUDA compute capability from which bf16 matrix multiplies run natively (Ampere, sm_80). Older GPUs
# (T4 sm_75, V100 sm_70) emulate bf16, slower than fp32.
GPU_BF16_CAPABILITY = (8, 0)
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


def gpu_runs_bf16(device: torch.device) -> bool:
    """Whether the GPU multiplies bf16 in hardware (compute capability 8.0 or newer)."""
    return torch.cuda.get_device_capability(device) >= GPU_BF16_CAPABILITY


def resolve(
    requested: Precision,
    engine: EngineName,
    device: torch.device,
    flags: frozenset[str] | None = None,
    gpu_bf16: bool | None = None,
) -> ResolvedPrecision:
    """The precision to run: ``auto`` decided, impossible or slow combinations refused.

    ``flags`` are the CPU's feature flags (read from this machine when not given; tests inject them).
    Where the platform lists no flags at all, an explicit bf16 is trusted and ``auto`` picks fp32.
    ``gpu_bf16`` says whether the GPU runs bf16 natively (asked of the device when not given).

    Raises:
        ModelConfigError: int8 on a GPU; OpenVINO on a GPU; bf16 on a CPU or GPU without native bf16.
    """
    if not engine_spec(engine).runs_on(device):
        raise ModelConfigError(f"engine '{engine.value}' runs on CPU only; use engine 'torch' on {device}")
    if device.type != "cpu":
        return _resolve_on_gpu(requested, device, gpu_bf16)
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


def _resolve_on_gpu(requested: Precision, device: torch.device, gpu_bf16: bool | None) -> ResolvedPrecision:
    if requested is Precision.INT8:
        raise ModelConfigError(
            f"precision 'int8' runs on CPU only; the worker was placed on {device}. Use 'bf16' or 'auto' on GPUs."
        )
    if requested is Precision.FP32:
        return ResolvedPrecision(requested, requested, f"as configured, on {device}")
    native_bf16 = gpu_runs_bf16(device) if gpu_bf16 is None else gpu_bf16
    minimum = ".".join(map(str, GPU_BF16_CAPABILITY))
    if requested is Precision.AUTO:
        if native_bf16:
            return ResolvedPrecision(requested, Precision.BF16, f"auto: {device} runs bf16 natively")
        reason = f"auto: {device} has no native bf16 (compute capability below {minimum}), so fp32"
        logger.info(reason)
        return ResolvedPrecision(requested, Precision.FP32, reason)
    if requested is Precision.BF16 and not native_bf16:
        raise ModelConfigError(
            f"precision 'bf16' refused: {device} has no native bf16 (compute capability below {minimum}: T4, V100 "
            "and older emulate it, slower than fp32). Use 'fp32' or 'auto' on this GPU."
        )
    return ResolvedPrecision(requested, requested, f"as configured, on {device}")


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU's feature flags (``cpuinfo``, else this machine's), or an empty set where none are listed.

    For this machine, ``INSTRUCTOR_CPU_FLAGS`` (comma-separated), when set, replaces what it says.
    """
    injected = os.environ.get(CPU_FLAGS_ENV)
    if cpuinfo is None and injected is not None:
        return frozenset(flag.strip() for flag in injected.split(",") if flag.strip())
    cpuinfo = cpuinfo or Path("/proc/cpuinfo")
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
