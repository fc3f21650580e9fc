"""nDCG@10, Recall@100 and MRR@10 through ir-measures (trec_eval's own C code, via pytrec-eval-terrier).

BEIR and MTEB score with pytrec_eval, so the same code path gives figures comparable with the
published ones: graded relevance and linear gains in nDCG, relevance >= 1 counted as relevant,
means over the judged queries. Ties between equal scores are broken by trec_eval (document id),
exactly as there.
"""

from __future__ import annotations

import dataclasses

import ir_measures
from ir_measures import RR, R, nDCG

# Report key (MTEB's naming) -> the ir-measures measure that computes it.
MEASURES: dict[str, ir_measures.Measure] = {
    "ndcg_at_10": nDCG @ 10,
    "recall_at_100": R @ 100,
    "mrr_at_10": RR @ 10,
}
LABELS = {"ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100", "mrr_at_10": "MRR@10"}


@dataclasses.dataclass(frozen=True)
class Scores:
    """Means over the queries, and the value per query (for finding where two models differ)."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> Scores:
    """Score a run against graded judgments; every judged query counts (an empty result scores 0)."""
    complete_run = {query_id: run.get(query_id, {}) for query_id in qrels}
    keys = {measure: key for key, measure in MEASURES.items()}
    per_query: dict[str, dict[str, float]] = {query_id: dict.fromkeys(MEASURES, 0.0) for query_id in qrels}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, complete_run):
        per_query[metric.query_id][keys[metric.measure]] = float(metric.value)
    mean = {key: sum(values[key] for values in per_query.values()) / len(per_query) for key in MEASURES}
    return Scores(mean=mean, per_query=per_query)
