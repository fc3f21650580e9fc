"""``python -m toolkit bench-fill``: does one client fill the server? Client and embed job beside the load generator.

On one server serving the demo (MiniLM, the mode given), with the same texts and the same request
size, in one run:
- the load generator of ``make bench`` (``toolkit.bench.load``) at several concurrencies: the best
  is the server's capacity for that request shape;
- ``InstructorClient(concurrency=N).embed(texts)`` at the same concurrencies;
- ``python -m toolkit embed`` (its defaults) over a JSONL file of the same texts.
Writes ``docs/benchmarks/fill-<machine>.json`` and ``.md``: pairs/s and each one's ratio to the capacity.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from instructor_client import InstructorClient
from toolkit import REPO_ROOT
from toolkit.bench.cli import default_stem
from toolkit.bench.load import run_load
from toolkit.bench.runner import machine
from toolkit.build.archive import WorkerConfig, archive_for_source
from toolkit.corpus.sample import sample_texts
from toolkit.models import model_source
from toolkit.serve.scratch_server import RunningServer, running_server

NAME = "fill"
INSTRUCTION = "Represent the document for retrieval: "


@contextlib.contextmanager
def demo_server(work: Path, name: str, precision: str = "fp32", engine: str = "torch") -> Iterator[RunningServer]:
    """A scratch TorchServe serving the demo (MiniLM) as ``name`` with one worker."""
    source = model_source.resolve(model_source.DEMO, work / "models")
    archive_for_source(source, work / "store", WorkerConfig(), name, precision=precision, engine=engine, say=print)
    with running_server(work / "server", work / "store") as running:
        running.management.register(f"{name}.mar", initial_workers=1)
        yield running


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """How the command was run, for the results file."""
    return f"python -m toolkit {name} " + " ".join(sys.argv[1:] if argv is None else argv)


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus = sample_texts(args.pairs)
    with demo_server(work, NAME, args.precision, args.engine) as running:
        key_file = running.layout.key_file
        url = f"{running.inference_url}/predictions/{NAME}"
        headers = {"Authorization": f"Bearer {running.keys().inference}"}
        bodies = [
            {"inputs": [[INSTRUCTION, text] for text in corpus[start : start + args.request_pairs]]}
            for start in range(0, len(corpus), args.request_pairs)
        ]
        run_load(url, headers, bodies[:4], 2, 2.0, 4)  # warm-up
        results: dict[str, Any] = {"load_generator": {}, "client": {}}
        for concurrency in args.concurrency:
            load = run_load(url, headers, bodies, concurrency, args.duration, len(bodies))
            results["load_generator"][concurrency] = round(load.pairs_per_s, 1)
            client = InstructorClient(
                running.inference_url,
                NAME,
                key_file=key_file,
                management_url=running.management_url,
                max_pairs_per_request=args.request_pairs,
                concurrency=concurrency,
            )
            started = time.perf_counter()
            client.embed_texts(corpus, INSTRUCTION)
            results["client"][concurrency] = round(len(corpus) / (time.perf_counter() - started), 1)
        results["embed_command"] = embed_rate(running, corpus, work)
    capacity = max(results["load_generator"].values())
    best_client = max(results["client"].values())
    return results | {
        "capacity_pairs_per_s": capacity,
        "client_best_ratio": round(best_client / capacity, 3),
        "embed_command_ratio": round(results["embed_command"] / capacity, 3),
    }


def embed_rate(running: Any, corpus: list[str], work: Path) -> float:
    """Rows/s of ``python -m toolkit embed`` (in-process, its default concurrency and request size)."""
    from toolkit.corpus.cli import main as embed_main

    path = work / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": n, "text": text}) + "\n" for n, text in enumerate(corpus)))
    common = ["--url", running.inference_url, "--management-url", running.management_url, "--name", NAME]
    started = time.perf_counter()
    code = embed_main(
        [
            str(path),
            str(work / "out"),
            "--instruction",
            INSTRUCTION,
            "--quiet",
            *common,
            "--key-file",
            str(running.layout.key_file),
        ]
    )
    assert code == 0, "the embed command failed"
    return round(len(corpus) / (time.perf_counter() - started), 1)


def markdown(document: dict[str, Any]) -> str:
    host, results = document["machine"], document["results"]
    lines = [
        f"# Does one client fill the server? ({document['date']})",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, flags {', '.join(host['cpu_flags']) or 'none of note'}.",
        f"Server: the demo (all-MiniLM-L6-v2, real weights), {document['mode']}, 1 worker; requests of "
        f"{document['request_pairs']} pairs, {document['pairs']} texts. Command: `{document['command']}`.",
        "",
        "| concurrency | load generator (pairs/s) | InstructorClient (pairs/s) |",
        "|---|---|---|",
    ]
    for concurrency, rate in results["load_generator"].items():
        lines.append(f"| {concurrency} | {rate} | {results['client'][concurrency]} |")
    lines += [
        "",
        f"Capacity (the load generator's best): {results['capacity_pairs_per_s']} pairs/s. "
        f"Best client: {results['client_best_ratio']:.0%} of it. "
        f"`python -m toolkit embed` (defaults: 32 rows a request, 8 in flight): {results['embed_command']} rows/s, "
        f"{results['embed_command_ratio']:.0%} of it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolkit bench-fill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--request-pairs", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load-generator run")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    host = machine()
    with tempfile.TemporaryDirectory(prefix="bench-fill-") as work:
        results = measure(args, Path(work))
    document = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": host,
        "mode": f"{args.engine} {args.precision}",
        "pairs": args.pairs,
        "request_pairs": args.request_pairs,
        "command": command_line("bench-fill", argv),
        "results": results,
    }
    stem = f"fill-{default_stem(host)}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(document, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(document))
    print(markdown(document))
    return 0
