"""Raw encoder rate per engine x precision, on archives ``make bench`` already built (no server).

A quick companion to the full bench for shared machines: every variant is loaded once, then
each runs fixed batches of random token ids in interleaved rounds (so drift hits all alike),
and the best round is kept. Run: ``python -m toolkit.bench.raw_engines [BENCH_DIR/MODEL] [SECONDS]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from handler.encoder import InstructorEncoder, TokenizedRow
from handler.precision import REPORTED_CPU_FLAGS, cpu_flags, cpu_model
from handler.settings import HandlerSettings

# label -> (archive folder under the bench's model folder, engine, precision)
VARIANTS = {
    "torch fp32": ("fp32-store/ours-fp32", "torch", "fp32"),
    "torch bf16": ("bf16-store/ours-bf16", "torch", "bf16"),
    "torch int8": ("int8-store/ours-int8", "torch", "int8"),
    "openvino fp32": ("openvino-fp32-store/ours-openvino-fp32", "openvino", "fp32"),
    "openvino bf16": ("openvino-bf16-store/ours-openvino-bf16", "openvino", "bf16"),
    "openvino int8": ("openvino-int8-store/ours-openvino-int8", "openvino", "int8"),
}
SHAPES = {"B=8 x 96": (8, 96), "B=1 x 64": (1, 64)}
ROUNDS = 2


def random_rows(count: int, length: int, generator: torch.Generator) -> list[TokenizedRow]:
    """Rows of random token ids with an 8-token instruction masked from pooling."""
    return [TokenizedRow(torch.randint(5, 30000, (length,), generator=generator).tolist(), 8) for _ in range(count)]


def rate(encoder: InstructorEncoder, rows: list[TokenizedRow], duration_s: float) -> float:
    """Sequences per second over at least two batches and ``duration_s``."""
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < duration_s:
        encoder.encode_rows(rows)
        done += 1
    return done * len(rows) / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    bench_model_dir = Path(argv[0]) if argv else Path(".bench/large")
    duration_s = float(argv[1]) if len(argv) > 1 else 5.0
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    encoders = {}
    for label, (folder, engine, precision) in VARIANTS.items():
        settings = HandlerSettings.from_mapping(
            {"instruction_mode": "exclude", "engine": engine, "precision": precision}
        )
        encoders[label] = InstructorEncoder.from_folder(bench_model_dir / folder / "model", settings, threads=threads)
    generator = torch.Generator().manual_seed(0)
    batches = {shape: random_rows(*size, generator) for shape, size in SHAPES.items()}
    rounds: dict[str, dict[str, list[float]]] = {label: {shape: [] for shape in SHAPES} for label in VARIANTS}
    for _ in range(ROUNDS):
        for label, encoder in encoders.items():
            for shape, rows in batches.items():
                rounds[label][shape].append(rate(encoder, rows, duration_s))
                print(f"{label} {shape}: {rounds[label][shape][-1]:.2f} seq/s", flush=True)
    best = {label: {shape: round(max(values), 2) for shape, values in by.items()} for label, by in rounds.items()}
    flags = sorted(cpu_flags() & set(REPORTED_CPU_FLAGS))
    summary = {"cpu": cpu_model(), "flags": flags, "threads": threads, "best_of_rounds_seq_per_s": best}
    print(json.dumps(summary | {"all_rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
