"""``make eval`` / ``scripts/evaluate.py``: score served models on a BEIR-format folder.

Steps: read and check the data; per served name, describe its archive, embed the corpus and
the queries (cached), retrieve the top ``k`` by exact cosine, score with ir-measures; write the
JSON and markdown reports. Expected failures print one ``error:`` line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instructor_client import InstructorClient
from toolkit import REPO_ROOT
from toolkit.errors import reporting_errors
from toolkit.evaluation.beir_data import BeirDataset, load_beir
from toolkit.evaluation.download import BEIR_BASE_URL, download_task
from toolkit.evaluation.embedding import ServedEmbedder, VectorCache
from toolkit.evaluation.errors import EvaluationError
from toolkit.evaluation.metrics import score_run
from toolkit.evaluation.report import ModelResult, build_report, markdown, write_report
from toolkit.evaluation.retrieval import run_of, top_k_cosine
from toolkit.evaluation.served_model import ServedModel, describe_served
from toolkit.evaluation.tasks import (
    DEFAULT_INSTRUCTION_SET,
    TaskInfo,
    TaskInstructions,
    instruction_sets,
    resolve_instructions,
    task_info,
)
from toolkit.serve import server
from toolkit.serve.management import ManagementClient, TokenSession


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="scripts/evaluate.py")
    parser.add_argument("data", nargs="?", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    parser.add_argument("--name", default="instructor", help="the served endpoint (/predictions/NAME)")
    parser.add_argument("--compare", default=None, help="NAME1,NAME2,...: several served models; differences to NAME1")
    parser.add_argument("--task", default=None, help="BEIR task name (default: the folder's name when it is one)")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--instructions",
        choices=instruction_sets(),
        default=DEFAULT_INSTRUCTION_SET,
        help="whose per-task instructions to use (INSTRUCTOR's evaluation settings); none: no instruction",
    )
    parser.add_argument("--query-instruction", default=None, help="override the query instruction")
    parser.add_argument("--corpus-instruction", default=None, help="override the document instruction")
    parser.add_argument(
        "--exclude-self",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop a document whose id is the query's own (default: as MTEB does per task, e.g. ArguAna)",
    )
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "eval-results", help="report folder")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".eval-cache", help="vector cache folder")
    parser.add_argument("--no-cache", action="store_true", help="embed everything again and cache nothing")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight per model")
    parser.add_argument(
        "--max-pairs-per-request",
        type=int,
        default=128,
        help="the archive's max_items_per_request (make serve --max-items)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT, help="where the server started (key_file.json)")
    parser.add_argument("--config", type=Path, default=None, help="its config.properties (default: WORKDIR's)")
    parser.add_argument("--download", metavar="TASK", default=None, help="fetch the public BEIR TASK into --data-dir")
    parser.add_argument("--download-only", action="store_true", help="with --download: fetch, do not evaluate")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--download-url", default=BEIR_BASE_URL, help="base URL of the BEIR zips (a mirror)")
    return parser


def _served(args: argparse.Namespace) -> tuple[server.ServerLayout, str, str, Path]:
    workdir = args.workdir.resolve()
    config = (args.config or workdir / "config.properties").resolve()
    if not config.is_file():
        raise EvaluationError(f"{config} not found: start the server with make serve, or pass --workdir/--config")
    layout = server.ServerLayout(workdir=workdir, config_file=config, run_dir=workdir / ".run")
    inference_url, management_url = server.listener_urls(layout)
    store = Path(server.read_properties(config.read_text()).get("model_store", "model_store"))
    return layout, inference_url, management_url, store if store.is_absolute() else workdir / store


def _excluded_rows(dataset: BeirDataset) -> np.ndarray:
    """Per judged query, the corpus row with the query's own id (-1: none)."""
    rows = {doc_id: row for row, doc_id in enumerate(dataset.corpus_ids)}
    return np.array([rows.get(query_id, -1) for query_id in dataset.query_ids], dtype=np.int64)


def evaluate_model(
    dataset: BeirDataset,
    embedder: ServedEmbedder,
    instructions: TaskInstructions,
    exclude_self: bool,
    top_k: int,
) -> ModelResult:
    """Embed, retrieve and score one served model."""
    started = time.perf_counter()
    corpus = embedder.embed(dataset.corpus_texts, instructions.corpus, "corpus")
    corpus_done = time.perf_counter()
    queries = embedder.embed(dataset.query_texts, instructions.query, "queries")
    queries_done = time.perf_counter()
    excluded = _excluded_rows(dataset) if exclude_self else None
    ranking = top_k_cosine(queries, corpus, top_k, excluded)
    scores = score_run(dataset.qrels, run_of(ranking, dataset.query_ids, dataset.corpus_ids))
    finished = time.perf_counter()
    return ModelResult(
        model=embedder.model,
        scores=scores,
        seconds={
            "embed_corpus": corpus_done - started,
            "embed_queries": queries_done - corpus_done,
            "retrieve_and_score": finished - queries_done,
        },
        vectors={"embedded": embedder.embedded_rows, "cached": embedder.cached_rows, "dimension": corpus.shape[1]},
    )


def _embedder(
    args: argparse.Namespace, model: ServedModel, layout: server.ServerLayout, urls: tuple[str, str]
) -> ServedEmbedder:
    inference_url, management_url = urls
    session = TokenSession(layout.key_file, "inference", management_url)
    return ServedEmbedder(
        model,
        make_client=lambda: InstructorClient(
            inference_url, model.name, key_file=layout.key_file, max_pairs_per_request=args.max_pairs_per_request
        ),
        cache=VectorCache(None if args.no_cache else args.cache_dir, model),
        renew_key=session.renew,
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )


def _task(args: argparse.Namespace, data: Path) -> TaskInfo | None:
    if args.task:
        info = task_info(args.task)
        if info is None:
            print(f"note: {args.task!r} is not a known BEIR task: no built-in instructions", file=sys.stderr)
        return info
    return task_info(data.name)


def run(args: argparse.Namespace) -> int:
    """The whole evaluation; returns the exit code."""
    data = args.data
    if args.download:
        data = download_task(args.download, args.data_dir, args.download_url)
        print(f"BEIR {args.download}: {data}")
        if args.download_only:
            return 0
        args.task = args.task or args.download
    if data is None:
        raise EvaluationError("give a BEIR folder (DATA=...) or --download TASK")
    dataset = load_beir(data, args.split)
    task = _task(args, data)
    instructions = resolve_instructions(
        task.beir_name if task else None, args.instructions, args.query_instruction, args.corpus_instruction
    )
    exclude_self = args.exclude_self if args.exclude_self is not None else bool(task and task.exclude_self)
    layout, inference_url, management_url, model_store = _served(args)
    management = ManagementClient(layout.key_file, management_url, timeout_s=30)
    names = [name.strip() for name in args.compare.split(",") if name.strip()] if args.compare else [args.name]
    if not names:
        raise EvaluationError("--compare needs at least one served name: --compare NAME1,NAME2")
    models = [describe_served(management, name, model_store) for name in names]
    results = [
        evaluate_model(
            dataset,
            _embedder(args, model, layout, (inference_url, management_url)),
            instructions,
            exclude_self,
            args.top_k,
        )
        for model in models
    ]
    instruction_set = args.instructions if task else "none built in (not a known BEIR task)"
    report = build_report(dataset, task, instructions, instruction_set, exclude_self, args.top_k, results)
    stem = "-".join([task.beir_name if task else data.resolve().name, args.split, *names])
    json_path, md_path = write_report(report, args.output, stem)
    print(markdown(report))
    print(f"report: {json_path} and {md_path}")
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/evaluate.py``."""
    args = _parser().parse_args(argv)
    if min(args.top_k, args.concurrency, args.max_pairs_per_request) < 1:
        print("error: --top-k, --concurrency and --max-pairs-per-request must be at least 1", file=sys.stderr)
        return 2
    return reporting_errors(lambda: run(args))
