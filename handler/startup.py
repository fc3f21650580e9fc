"""What a worker does before it serves: load, check its own fidelity, measure its own speed.

1. Load the encoder in the precision the settings resolve to on this device and CPU.
2. Warm it up, then let :func:`handler.fidelity.check_at_start` decide whether a reduced mode
   keeps the vectors here; where it does not, reload in fp32 (the old engine is dropped first, so
   the model is never held twice) or refuse to load.
3. Measure tokens per second and derive the per-batch token budget (:mod:`handler.budget`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from handler.budget import TokenBudget, measure_rate
from handler.encoder import InstructorEncoder
from handler.fidelity import StartupCheck, check_at_start, read_fidelity, read_reference
from handler.precision import ResolvedPrecision
from handler.settings import HandlerSettings, Precision

logger = logging.getLogger(__name__)

WARM_UP_PAIR = ("Represent the sentence:", "Warm-up.")


@dataclasses.dataclass
class StartedWorker:
    """A worker's encoder and what it decided and measured at start."""

    encoder: InstructorEncoder
    fidelity: dict[str, Any] | None
    check: StartupCheck
    budget: TokenBudget


def start_worker(
    archive_dir: Path,
    settings: HandlerSettings,
    device: torch.device,
    response_timeout_s: float,
    threads: int | None = None,
) -> StartedWorker:
    """Load the archive's model, keep or drop its reduced mode by its own measurement, size its budget.

    Raises:
        ModelConfigError: the model cannot load, or its mode cannot be kept nor fall back to fp32.
    """
    model_dir = archive_dir / settings.model_subdir
    fidelity = read_fidelity(archive_dir)
    encoder = InstructorEncoder.from_folder(model_dir, settings, device, threads=threads)
    encoder.encode([WARM_UP_PAIR])
    check = check_at_start(encoder, settings.precision, settings.engine, fidelity, read_reference(archive_dir))
    if check.fallback_to_fp32:
        logger.warning("fidelity check at start: %s", check.reason)
        del encoder
        resolved = ResolvedPrecision(settings.precision, Precision.FP32, check.reason)
        encoder = InstructorEncoder.from_folder(model_dir, settings, device, threads=threads, resolved=resolved)
        encoder.encode([WARM_UP_PAIR])
    else:
        logger.info("fidelity check at start: %s", check.reason)
    budget = TokenBudget.of(measure_rate(encoder), response_timeout_s)
    return StartedWorker(encoder, fidelity, check, budget)
