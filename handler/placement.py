"""Where a worker computes: its device, and on a CPU how many threads it runs.

The policy, apart from TorchServe's glue (``handler.torchserve_handler`` only reads the context and
calls these), so benchmarks and tests learn it without importing ``ts``.
"""

from __future__ import annotations

from typing import Any

import torch

from handler.cpus import CpuShare, cpu_share, running_workers
from handler.engines import engine_spec
from handler.settings import HandlerSettings

# How often a CPU worker whose threads follow scaling recounts the workers beside it.
THREAD_RECHECK_S = 10.0


def select_device(gpu_id: Any) -> torch.device:
    """The GPU TorchServe assigned (``gpu_id``) when CUDA is present, else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def worker_device(settings: HandlerSettings, gpu_id: Any) -> torch.device:
    """The worker's device: an engine that does not run on GPUs runs on the CPU whatever GPU was assigned."""
    runs_on_gpu = engine_spec(settings.engine).runs_on(torch.device("cuda"))
    return select_device(gpu_id if runs_on_gpu else None)


def worker_cpu_share(settings: HandlerSettings, min_workers: int) -> CpuShare:
    """A CPU worker's CPUs and threads; workers start together, so at least the archive's ``minWorkers`` count."""
    return cpu_share(settings.threads, max(running_workers(), min_workers))


def threads_follow_scaling(settings: HandlerSettings) -> bool:
    """Whether a CPU worker re-divides its CPUs when the worker count changes.

    Not when the ``threads`` setting fixes the count, nor for an engine that fixes its threads at load.
    """
    return not settings.threads and not engine_spec(settings.engine).threads_fixed_at_load
