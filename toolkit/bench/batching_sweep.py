"""Micro-batch limits per engine x precision: the encoder's rate on the bench's pairs, per setting.

Runs on archives ``make bench`` (or ``raw_engines``) built, without a server: for each variant
and each server batch the bench's workloads form (8 single-pair requests, two 32-pair requests),
it encodes the same tokenized pairs under every ``micro_batch_padding_pct`` x ``micro_batch_rows``
combination, in interleaved rounds, and keeps the best round. Padding is the knob that matters:
a looser bound makes fewer, fuller forward passes (AMX wants large matrices) at the price of
computing padded positions. Run:
``python -m toolkit.bench.batching_sweep [BENCH_DIR/MODEL] [SECONDS] [VARIANT,...]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

from handler.batching import padding_tokens, plan_micro_batches
from handler.encoder import InstructorEncoder, TokenizedRow
from handler.precision import REPORTED_CPU_FLAGS, cpu_flags, cpu_model
from handler.settings import HandlerSettings
from toolkit.bench.raw_engines import VARIANTS
from toolkit.bench.workload import make_pairs

PADDING_PCTS = (0, 20, 40, 60, 100)
ROWS = (8, 32)
# name -> pairs in one server batch (see toolkit.bench.workload.WORKLOADS with batch_size 8)
BATCHES = {"8 single-pair requests": 8, "2 x 32-pair requests": 64}
ROUNDS = 2


def rate(encoder: InstructorEncoder, rows: list[TokenizedRow], duration_s: float) -> float:
    """Pairs per second encoding ``rows`` over and over, at least twice and ``duration_s``."""
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < duration_s:
        encoder.encode_rows(rows)
        done += 1
    return done * len(rows) / (time.perf_counter() - start)


def sweep(encoder: InstructorEncoder, batches: dict[str, list[list[TokenizedRow]]], duration_s: float) -> dict:
    """Best-of-rounds pairs/s and padding share per batch and (padding_pct, rows) setting."""
    base = encoder.settings
    results: dict = {}
    for _ in range(ROUNDS):
        for name, groups in batches.items():
            for padding, rows in itertools.product(PADDING_PCTS, ROWS):
                encoder.settings = dataclasses.replace(base, micro_batch_padding_pct=padding, micro_batch_rows=rows)
                speeds = [rate(encoder, group, duration_s / len(groups)) for group in groups]
                key = f"padding {padding}%, rows {rows}"
                lengths = [[len(row.input_ids) for row in group] for group in groups]
                plans = [plan_micro_batches(lens, rows, base.micro_batch_tokens, padding) for lens in lengths]
                waste = sum(padding_tokens(p, lens) for p, lens in zip(plans, lengths, strict=True))
                entry = results.setdefault(name, {}).setdefault(key, {"pairs_per_s": [], "padding_share": 0.0})
                entry["pairs_per_s"].append(round(len(speeds) / sum(1 / s for s in speeds), 2))
                entry["padding_share"] = round(waste / (waste + sum(map(sum, lengths))), 3)
                entry["forward_passes"] = sum(len(p) for p in plans)
    encoder.settings = base
    return results


def main(argv: list[str]) -> int:
    bench_model_dir = Path(argv[0]) if argv else Path(".bench/large")
    duration_s = float(argv[1]) if len(argv) > 1 else 4.0
    chosen = argv[2].split(",") if len(argv) > 2 else list(VARIANTS)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    summary: dict = {"cpu": cpu_model(), "flags": sorted(cpu_flags() & set(REPORTED_CPU_FLAGS)), "threads": threads}
    summary["variants"] = {}
    for label in chosen:
        folder, engine, precision = VARIANTS[label]
        settings = HandlerSettings.from_mapping(
            {"instruction_mode": "exclude", "engine": engine, "precision": precision}
        )
        encoder = InstructorEncoder.from_folder(bench_model_dir / folder / "model", settings, threads=threads)
        tokenizer = encoder.tokenizer
        pairs = make_pairs(
            lambda text, tokenizer=tokenizer: len(tokenizer(text, add_special_tokens=False)["input_ids"]), 256
        )
        rows = encoder.tokenize(pairs)
        # Several distinct server batches per size, so one lucky length mix does not decide.
        batches = {
            name: [rows[start : start + size] for start in range(0, 128, size)][:4] for name, size in BATCHES.items()
        }
        encoder.encode_rows(rows[:2])
        summary["variants"][label] = sweep(encoder, batches, duration_s)
        for name, by_setting in summary["variants"][label].items():
            best = max(by_setting, key=lambda key, by_setting=by_setting: max(by_setting[key]["pairs_per_s"]))
            print(f"{label} / {name}: best {best} {by_setting[best]}", flush=True)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
