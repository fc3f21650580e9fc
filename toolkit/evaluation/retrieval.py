"""Exact cosine top-k over a float32 corpus matrix, scored in chunks.

Memory stays at the two matrices plus one ``query_chunk x corpus_chunk`` score block (16 MB at
the defaults, and a few of its size while merging), whatever the corpus size: a 100,000 x 768
corpus is 293 MiB of float32 and never becomes Python lists. The best ``k`` per query are merged
chunk by chunk with ``argpartition``; the final order is by score, ties by corpus position, so
it is repeatable.
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_QUERY_CHUNK = 256
DEFAULT_CORPUS_CHUNK = 16384


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Per query, the best corpus rows (``indices``) and their cosines (``scores``), best first.

    A row may hold ``-1`` / ``-inf`` slots only when the corpus has fewer usable documents than ``k``.
    """

    indices: np.ndarray
    scores: np.ndarray


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32 (a zero row stays zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.float32(1e-12))


def top_k_cosine(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int = 100,
    excluded: np.ndarray | None = None,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
    corpus_chunk: int = DEFAULT_CORPUS_CHUNK,
) -> Ranking:
    """The ``k`` corpus rows with the highest cosine to each query.

    Args:
        queries: ``(n_queries, dim)`` vectors.
        corpus: ``(n_docs, dim)`` vectors.
        k: results per query (at most ``n_docs``).
        excluded: per query, one corpus row never returned (``-1``: none); MTEB's
            ``ignore_identical_ids`` for tasks whose queries are also documents.
        query_chunk / corpus_chunk: the score block computed at once.
    """
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries {queries.shape} and corpus {corpus.shape} must be 2-D with the same width")
    k = min(k, corpus.shape[0])
    corpus = np.asarray(corpus, dtype=np.float32)  # no copy when it is float32 already
    n_queries = queries.shape[0]
    corpus_norms = _row_norms(corpus, corpus_chunk)
    best_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    best_indices = np.full((n_queries, k), -1, dtype=np.int64)
    for q_start in range(0, n_queries, query_chunk):
        q_stop = min(q_start + query_chunk, n_queries)
        block_queries = normalized(queries[q_start:q_stop])
        rows = np.arange(q_stop - q_start)
        for c_start in range(0, corpus.shape[0], corpus_chunk):
            c_stop = min(c_start + corpus_chunk, corpus.shape[0])
            # Dividing the scores by the document norms: no normalized copy of the corpus.
            scores = block_queries @ corpus[c_start:c_stop].T
            scores /= corpus_norms[c_start:c_stop]
            if excluded is not None:
                own = excluded[q_start:q_stop]
                inside = (own >= c_start) & (own < c_stop)
                scores[rows[inside], own[inside] - c_start] = -np.inf
            best_scores[q_start:q_stop], best_indices[q_start:q_stop] = _merge(
                best_scores[q_start:q_stop], best_indices[q_start:q_stop], scores, c_start, k
            )
    # Best first; equal scores by corpus position (empty slots, -1, last).
    position = np.where(best_indices < 0, np.iinfo(np.int64).max, best_indices)
    order = np.lexsort((position, -best_scores), axis=1)
    indices = np.take_along_axis(best_indices, order, axis=1)
    scores = np.take_along_axis(best_scores, order, axis=1)
    return Ranking(indices=np.where(np.isneginf(scores), -1, indices), scores=scores)


def _row_norms(matrix: np.ndarray, chunk: int) -> np.ndarray:
    """Row lengths (at least 1e-12) in float32, computed a chunk at a time."""
    norms = np.empty(matrix.shape[0], dtype=np.float32)
    for start in range(0, matrix.shape[0], chunk):
        block = np.asarray(matrix[start : start + chunk], dtype=np.float32)
        norms[start : start + chunk] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return np.maximum(norms, np.float32(1e-12))


def _merge(
    best_scores: np.ndarray, best_indices: np.ndarray, scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of the running best and a new score block whose column j is corpus row offset + j."""
    merged = np.concatenate([best_scores, scores], axis=1)
    keep = np.argpartition(-merged, k - 1, axis=1)[:, :k]
    from_best = keep < k
    previous = np.take_along_axis(best_indices, np.minimum(keep, k - 1), axis=1)
    return np.take_along_axis(merged, keep, axis=1), np.where(from_best, previous, offset + keep - k)


def run_of(ranking: Ranking, query_ids: list[str], corpus_ids: list[str]) -> dict[str, dict[str, float]]:
    """The ranking as a TREC run: query id -> document id -> score (empty slots left out)."""
    run: dict[str, dict[str, float]] = {}
    for query_id, indices, scores in zip(query_ids, ranking.indices, ranking.scores, strict=True):
        run[query_id] = {
            corpus_ids[index]: float(score) for index, score in zip(indices, scores, strict=True) if index >= 0
        }
    return run
