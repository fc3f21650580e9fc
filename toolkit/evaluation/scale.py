"""Measure ``make eval`` at corpus scale without a model: everything but the server's forward pass.

Writes a synthetic BEIR folder (``n_docs`` documents of a few sentences, ``n_queries`` judged
queries), reads and checks it, fills the vector cache with random unit vectors as the server
would have, then runs the real pipeline from the cache: load vectors, exact cosine top-100 in
chunks, ir-measures scoring. Prints the time of each step and the process's peak memory.
The server's embedding speed is measured by ``make bench`` (docs/benchmarks/).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.evaluation.beir_data import load_beir
from toolkit.evaluation.embedding import ServedEmbedder, VectorCache
from toolkit.evaluation.metrics import score_run
from toolkit.evaluation.retrieval import run_of, top_k_cosine
from toolkit.evaluation.served_model import ServedModel

WORDS = [
    "protein",
    "cell",
    "gene",
    "signal",
    "pathway",
    "patient",
    "trial",
    "dose",
    "effect",
    "risk",
    "model",
    "data",
    "network",
    "energy",
    "climate",
    "ocean",
    "carbon",
    "market",
    "price",
    "policy",
    "rate",
    "growth",
    "river",
    "soil",
    "plant",
    "species",
    "memory",
    "neuron",
    "brain",
    "drug",
]


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_synthetic(folder: Path, n_docs: int, n_queries: int, seed: int = 0) -> None:
    """A BEIR folder: documents of ~60 words, queries of ~10, three graded judgments per query."""
    rng = np.random.default_rng(seed)
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as corpus:
        for index in range(n_docs):
            text = " ".join(rng.choice(WORDS, 60))
            corpus.write(json.dumps({"_id": f"d{index}", "title": f"Document {index}", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as queries, (folder / "qrels" / "test.tsv").open("w") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for index in range(n_queries):
            queries.write(json.dumps({"_id": f"q{index}", "text": " ".join(rng.choice(WORDS, 10))}) + "\n")
            for rank, doc in enumerate(rng.choice(n_docs, 3, replace=False)):
                qrels.write(f"q{index}\td{doc}\t{2 if rank == 0 else 1}\n")


class _RandomClient:
    """Stands in for the server when filling the cache: random unit vectors."""

    def __init__(self, dim: int, seed: int) -> None:
        self.dim = dim
        self.rng = np.random.default_rng(seed)

    def embed(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        vectors = self.rng.standard_normal((len(pairs), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def measure(n_docs: int, n_queries: int, dim: int, workdir: Path) -> dict[str, float]:
    """Seconds per step and peak memory for one synthetic run."""
    results: dict[str, float] = {}
    started = time.perf_counter()
    write_synthetic(workdir / "data", n_docs, n_queries)
    results["write_data_s"] = time.perf_counter() - started
    model = ServedModel("scale", "scale.mar", "synthetic", "fp32", "exclude", "mean_tokens")
    cache = VectorCache(workdir / "cache", model)
    step = time.perf_counter()
    dataset = load_beir(workdir / "data")
    results["read_and_check_s"] = time.perf_counter() - step
    filler = ServedEmbedder(model, lambda: _RandomClient(dim, 1), cache, progress=False)
    filler.embed(dataset.corpus_texts, "", "corpus")
    filler.embed(dataset.query_texts, "", "queries")
    del filler
    step = time.perf_counter()
    embedder = ServedEmbedder(model, lambda: _RandomClient(dim, 2), cache, progress=False)
    corpus = embedder.embed(dataset.corpus_texts, "", "corpus")
    queries = embedder.embed(dataset.query_texts, "", "queries")
    assert embedder.embedded_rows == 0, "every vector should come from the cache"
    results["load_cached_vectors_s"] = time.perf_counter() - step
    step = time.perf_counter()
    ranking = top_k_cosine(queries, corpus, 100)
    results["top100_exact_cosine_s"] = time.perf_counter() - step
    step = time.perf_counter()
    scores = score_run(dataset.qrels, run_of(ranking, dataset.query_ids, dataset.corpus_ids))
    results["score_s"] = time.perf_counter() - step
    results["total_after_writing_s"] = time.perf_counter() - started - results["write_data_s"]
    results["corpus_matrix_mb"] = corpus.nbytes / 2**20
    results["peak_rss_mb"] = peak_rss_mb()
    results["ndcg_at_10_random_vectors"] = scores.mean["ndcg_at_10"]
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=768, help="768: instructor-base/-large/-xl output")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval-scale-") as workdir:
        results = measure(args.docs, args.queries, args.dim, Path(workdir))
    print(json.dumps({"docs": args.docs, "queries": args.queries, "dim": args.dim} | results, indent=2))
    return 0
