"""Micro-batch limits per engine x precision: the encoder's rate on the bench's pairs, per setting.

Runs on archives ``make bench`` (or ``raw_engines``) built, without a server: for each variant
and each server batch the bench's workloads form (8 single-pair requests, two 32-pair requests),
it encodes the same tokenized pairs under every ``micro_batch_padding_pct`` x ``micro_batch_rows``
combination, in interleaved rounds, and keeps the best round. Padding is the knob that matters:
a looser bound makes fewer, fuller forward passes (AMX wants large matrices) at the price of
computing padded positions. With ``--multiples`` it times ``micro_batch_length_multiple`` instead,
on rows of lengths the engine has not seen. Run:
``python -m toolkit.bench.batching_sweep [BENCH_DIR/MODEL] [--seconds S] [--variants A,B] [--multiples 1,16]``;
``--archive FOLDER`` (repeatable) sweeps an unpacked archive (``--format no-archive``) instead, named by
its engine, precision and int8 scheme (how the per-scheme defaults were measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml

from handler.batching import padding_tokens
from handler.encoder import InstructorEncoder, TokenizedRow
from handler.precision import REPORTED_CPU_FLAGS, cpu_flags, cpu_model
from handler.settings import HandlerSettings
from toolkit.bench.raw_engines import VARIANTS, rate
from toolkit.build.workload import make_pairs, token_counter

PADDING_PCTS = (0, 20, 40, 60, 100)
ROWS = (8, 32)
# name -> pairs in one server batch (see toolkit.build.workload.WORKLOADS with batch_size 8)
BATCHES = {"8 single-pair requests": 8, "2 x 32-pair requests": 64}
ROUNDS = 2


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
                plans = [encoder.plan(lens) for lens in lengths]
                waste = sum(
                    padding_tokens(plan, lens, widths) for (plan, widths), lens in zip(plans, lengths, strict=True)
                )
                entry = results.setdefault(name, {}).setdefault(key, {"pairs_per_s": [], "padding_share": 0.0})
                entry["pairs_per_s"].append(round(len(speeds) / sum(1 / s for s in speeds), 2))
                entry["padding_share"] = round(waste / (waste + sum(map(sum, lengths))), 3)
                entry["forward_passes"] = sum(len(plan) for plan, _ in plans)
    encoder.settings = base
    return results


def shape_reuse(
    load: Callable[[], InstructorEncoder], multiples: Sequence[int], pairs_count: int = 80
) -> dict[str, dict[str, float]]:
    """Per ``micro_batch_length_multiple``: ms per pair one at a time, then pairs/s in batches of 8.

    Each multiple gets a freshly loaded encoder (engines cache per input shape), fed rows whose
    lengths it has not seen, as a server meets new texts.
    """
    results = {}
    for multiple in multiples:
        encoder = load()
        encoder.settings = dataclasses.replace(encoder.settings, micro_batch_length_multiple=multiple)
        rows = encoder.tokenize(make_pairs(token_counter(encoder.tokenizer), 256))
        encoder.encode_rows(rows[:1])
        started = time.perf_counter()
        for row in rows[:pairs_count]:
            encoder.encode_rows([row])
        one_ms = (time.perf_counter() - started) / pairs_count * 1000
        started = time.perf_counter()
        for start in range(pairs_count, 3 * pairs_count, 8):
            encoder.encode_rows(rows[start : start + 8])
        eight = 2 * pairs_count / (time.perf_counter() - started)
        results[f"multiple {multiple}"] = {
            "batch_1_ms_per_pair": round(one_ms, 1),
            "batch_8_pairs_per_s": round(eight, 2),
        }
        print(f"  multiple {multiple}: {results[f'multiple {multiple}']}", flush=True)
    return results


def archive_variant(folder: Path) -> tuple[str, tuple[Path, str, str, str]]:
    """An unpacked archive as a sweep variant: its label (engine, precision, int8 scheme) and model folder."""
    handler = yaml.safe_load((folder / "model-config.yaml").read_text())["handler"]
    engine_file = folder / "model" / "openvino" / "engine.json"
    scheme = json.loads(engine_file.read_text()) if engine_file.exists() else {}
    label = f"{folder.name}: {handler['engine']} {handler['precision']}"
    if scheme:
        label += f" {scheme['int8_scheme']} (groups of {scheme['dynamic_quantization_group_size']})"
    return label, (folder / "model", handler["engine"], handler["precision"], handler["instruction_mode"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bench_model_dir", nargs="?", type=Path, default=Path(".bench/large"))
    parser.add_argument("--seconds", type=float, default=4.0, help="per setting and batch size (padding sweep)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument(
        "--multiples", default=None, help="e.g. 1,8,16: time length multiples on unseen rows instead of padding"
    )
    parser.add_argument("--archive", type=Path, action="append", default=[], help="an unpacked archive folder")
    args = parser.parse_args(argv)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    summary: dict = {"cpu": cpu_model(), "flags": sorted(cpu_flags() & set(REPORTED_CPU_FLAGS)), "threads": threads}
    summary["variants"] = {}
    variants = {
        label: (args.bench_model_dir / folder / "model", engine, precision, "exclude")
        for label, (folder, engine, precision) in VARIANTS.items()
    }
    chosen = args.variants.split(",")
    if args.archive:
        variants = dict(archive_variant(folder) for folder in args.archive)
        chosen = list(variants)
    for label in chosen:
        model_dir, engine, precision, mode = variants[label]
        settings = HandlerSettings.from_mapping({"instruction_mode": mode, "engine": engine, "precision": precision})

        def load(model_dir: Path = model_dir, settings: HandlerSettings = settings) -> InstructorEncoder:
            return InstructorEncoder.from_folder(model_dir, settings, threads=threads)

        print(label, flush=True)
        if args.multiples:
            summary["variants"][label] = shape_reuse(load, [int(value) for value in args.multiples.split(",")])
            continue
        encoder = load()
        pairs = make_pairs(token_counter(encoder.tokenizer), 256)
        rows = encoder.tokenize(pairs)
        # Several distinct server batches per size, so one lucky length mix does not decide.
        batches = {
            name: [rows[start : start + size] for start in range(0, 128, size)][:4] for name, size in BATCHES.items()
        }
        encoder.encode_rows(rows[:2])
        summary["variants"][label] = sweep(encoder, batches, args.seconds)
        for name, by_setting in summary["variants"][label].items():
            best = max(by_setting, key=lambda key, by_setting=by_setting: max(by_setting[key]["pairs_per_s"]))
            print(f"{label} / {name}: best {best} {by_setting[best]}", flush=True)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
