"""How much a reduced mode moves retrieval: a generated probe corpus ranked by fp32 and by the mode.

The cosine floor says how far each vector moved; these figures say whether it changed what a
search returns. :func:`probe_corpus` generates, in the repo and offline, a few hundred varied
documents and tens of queries, each with an INSTRUCTOR-style instruction. The fp32 vectors rank the
documents for every query (the reference order); the mode's vectors rank them again, and
:func:`ranking_agreement` reports, as means over the queries:

- ``top10_overlap``: the share of fp32's top 10 that is also in the mode's top 10;
- ``ndcg_at_10``: nDCG@10 of the mode's ranking, with fp32's top 10 as graded relevance
  (its first document counts 10, its tenth 1, the rest 0; linear gains, log2 discount), so 1.0
  means the same ten documents in the same order.

The gate reports them beside the cosine; the floors stay on the cosine (0.99 int8, 0.999 bf16).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch

TOP_K = 10

_DOMAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("medicine", ("the new vaccine", "a daily aspirin", "the knee surgery", "the insulin pump", "sleep apnea")),
    ("finance", ("the central bank", "the bond market", "a small-cap fund", "the pension plan", "mortgage rates")),
    ("software", ("the database index", "the web server", "a memory leak", "the build cache", "the login page")),
    ("cooking", ("the sourdough loaf", "a slow-cooked stew", "the tomato sauce", "fresh pasta", "the spice rub")),
    ("travel", ("the night train", "a budget airline", "the mountain hostel", "the city pass", "a ferry crossing")),
    ("climate", ("the glacier", "sea level rise", "the heat wave", "carbon capture", "the monsoon season")),
    ("sports", ("the marathon runner", "the home team", "a penalty kick", "the tennis final", "the swim relay")),
    ("law", ("the rental contract", "the patent claim", "a data privacy rule", "the court ruling", "the tax appeal")),
)
_DOCUMENT_TEMPLATES = (
    "{subject} was the main topic of this week's report on {domain}.",
    "Experts disagree about {subject}, and the debate in {domain} is far from settled.",
    "A short guide: everything a beginner should know about {subject}.",
    "Costs linked to {subject} rose sharply this year, according to {domain} analysts.",
    "Why {subject} failed, and what the {domain} community learned from it.",
    "Ten years of data on {subject} show a slow but steady improvement.",
)
_DOCUMENT_INSTRUCTIONS = (
    "Represent the document for retrieval:",
    "Represent the {domain} passage for retrieving relevant answers:",
)
_QUERY_TEMPLATES = (
    "What should I know about {subject}?",
    "Why did {subject} become more expensive?",
)
_QUERY_INSTRUCTION = "Represent the {domain} question for retrieving supporting documents:"


@dataclasses.dataclass(frozen=True)
class ProbeCorpus:
    """Instruction + text pairs: the queries and the documents they are ranked against."""

    queries: tuple[tuple[str, str], ...]
    documents: tuple[tuple[str, str], ...]


def probe_corpus() -> ProbeCorpus:
    """The generated corpus: 240 documents and 32 queries over eight domains (deterministic)."""
    documents = []
    for domain, subjects in _DOMAINS:
        for (index, subject), template in itertools.product(enumerate(subjects), _DOCUMENT_TEMPLATES):
            instruction = _DOCUMENT_INSTRUCTIONS[index % len(_DOCUMENT_INSTRUCTIONS)].format(domain=domain)
            documents.append((instruction, template.format(subject=subject, domain=domain)))
    queries = []
    for domain, subjects in _DOMAINS:
        for subject, template in itertools.product(subjects[:2], _QUERY_TEMPLATES):
            queries.append((_QUERY_INSTRUCTION.format(domain=domain), template.format(subject=subject)))
    return ProbeCorpus(tuple(queries), tuple(documents))


@dataclasses.dataclass(frozen=True)
class RankingFigures:
    """Means over the queries of how the mode's top 10 agrees with fp32's."""

    top10_overlap: float
    ndcg_at_10: float
    min_top10_overlap: float
    queries: int
    documents: int

    def to_mapping(self) -> dict[str, float | int]:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in vars(self).items()}


def ndcg_against(reference_order: list[int], candidate_order: list[int], k: int = TOP_K) -> float:
    """nDCG@k of ``candidate_order`` where the reference's i-th document has relevance k - i."""
    relevance = {document: k - rank for rank, document in enumerate(reference_order[:k])}
    gained = sum(relevance.get(document, 0) / math.log2(rank + 2) for rank, document in enumerate(candidate_order[:k]))
    ideal = sum((k - rank) / math.log2(rank + 2) for rank in range(min(k, len(reference_order))))
    return gained / ideal


def ranking_agreement(
    exact_queries: torch.Tensor,
    exact_documents: torch.Tensor,
    candidate_queries: torch.Tensor,
    candidate_documents: torch.Tensor,
    k: int = TOP_K,
) -> RankingFigures:
    """Rank the documents for every query by cosine, with fp32 vectors and the mode's, and compare."""
    exact_order = _ranked(exact_queries, exact_documents, k)
    candidate_order = _ranked(candidate_queries, candidate_documents, k)
    overlaps = [len(set(e) & set(c)) / k for e, c in zip(exact_order, candidate_order, strict=True)]
    gains = [ndcg_against(e, c, k) for e, c in zip(exact_order, candidate_order, strict=True)]
    return RankingFigures(
        top10_overlap=sum(overlaps) / len(overlaps),
        ndcg_at_10=sum(gains) / len(gains),
        min_top10_overlap=min(overlaps),
        queries=len(exact_queries),
        documents=len(exact_documents),
    )


def _ranked(queries: torch.Tensor, documents: torch.Tensor, k: int) -> list[list[int]]:
    """Each query's top-k document indices by cosine (ties to the lower index)."""
    scores = (
        torch.nn.functional.normalize(queries.float(), dim=1)
        @ torch.nn.functional.normalize(documents.float(), dim=1).T
    )
    # A stable descending sort breaks ties by index, the same way for both vector sets.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return order.tolist()
