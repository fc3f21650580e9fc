"""``make bench`` / ``scripts/bench.py``: run the benchmark and write docs/benchmarks/."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from handler.settings import EngineName, Precision
from toolkit import REPO_ROOT
from toolkit.bench import report
from toolkit.bench.runner import MODELS, BenchOptions, run_benchmark

FEATURE_NAMES = (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"), ("avx512_vnni", "vnni"))


def write_results(document: dict, out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    """``STEM.json`` (raw numbers), ``STEM.png`` (plot) and ``STEM.md`` (tables) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw, picture, page = (out_dir / f"{stem}.{suffix}" for suffix in ("json", "png", "md"))
    raw.write_text(json.dumps(document, indent=1) + "\n")
    report.plot(document, picture)
    page.write_text(report.markdown(document, picture.name) + "\n")
    return raw, picture, page


def default_stem(machine: dict) -> str:
    """Results are named by what decides them: ``gpu``, or the CPU's cores and bf16/int8 features."""
    if machine["gpu"]:
        return "gpu"
    flags = set(machine.get("cpu_flags", ()))
    features = [name for flag, name in FEATURE_NAMES if flag in flags] or ["no-bf16"]
    return f"cpu-{machine['cores']}core-" + "-".join(features)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="large,base,minilm", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--engines", default="torch,openvino", help="comma-separated, of torch, openvino")
    parser.add_argument("--usd-per-hour", type=float, default=None, help="machine price: adds cost per 1M embeddings")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per workload and server, and per limit")
    parser.add_argument("--min-requests", type=int, default=2, help="per load run (at least the concurrency)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per load run, alternating between servers")
    parser.add_argument("--pairs", type=int, default=256, help="distinct pairs in the workload")
    parser.add_argument("--no-zip", action="store_true", help="skip the zip-format cold starts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    parser.add_argument("--stem", default=None, help="file names; default: cpu-<cores>core-<bf16/vnni features> or gpu")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".bench", help="models and servers (kept)")
    args = parser.parse_args(argv)
    models = tuple(args.models.split(","))
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    options = BenchOptions(
        workdir=args.workdir,
        models=models,
        precisions=tuple(Precision(value) for value in args.precisions.split(",")),
        engines=tuple(EngineName(value) for value in args.engines.split(",")),
        usd_per_hour=args.usd_per_hour,
        duration_s=args.duration,
        min_requests=args.min_requests,
        rounds=args.rounds,
        pairs=args.pairs,
        zip_cold_start=not args.no_zip,
        log=lambda line: print(line, flush=True),
    )
    command = "python scripts/bench.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    document = run_benchmark(options, command.strip())
    stem = args.stem or default_stem(document["machine"])
    for path in write_results(document, args.out, stem):
        print(f"wrote {path}")
    return 0
