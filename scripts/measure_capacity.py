"""Probe one worker (memory, load time, pairs/s) for a model shape (random weights) or folder; prints JSON."""

import argparse
import json
import tempfile
from pathlib import Path

import _bootstrap  # noqa: F401  (repository root on sys.path)

from handler.settings import HandlerSettings
from toolkit.capacity import measure_worker
from toolkit.tiny_model import SHAPES, build_test_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="large")
    parser.add_argument("--model", type=Path, default=None, help="a model folder instead of a random shape")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48, help="tokens per pair, instruction included")
    args = parser.parse_args()
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or build_test_model(Path(scratch) / args.shape, args.shape)
        result = measure_worker(model, settings, args.requests, args.concurrency, args.tokens)
    print(json.dumps({"model": str(args.model or f"{args.shape} shape, random weights")} | result, indent=2))
