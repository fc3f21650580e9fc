"""The evaluation report: one JSON document (everything, per query too) and a markdown summary.

Both files are written under temporary names and renamed only once both are complete, so a
run that fails leaves no report that looks finished.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

from toolkit.evaluation.beir_data import BeirDataset
from toolkit.evaluation.metrics import LABELS, Scores
from toolkit.evaluation.served_model import ServedModel
from toolkit.evaluation.tasks import PUBLISHED_NDCG_AT_10, TaskInfo, TaskInstructions

PUBLISHED_SOURCE = "INSTRUCTOR paper (Su et al., 2023), MTEB retrieval, full test split"


@dataclasses.dataclass(frozen=True)
class ModelResult:
    """One served model's scores and costs on the data."""

    model: ServedModel
    scores: Scores
    seconds: dict[str, float]
    vectors: dict[str, int]


def build_report(
    dataset: BeirDataset,
    task: TaskInfo | None,
    instructions: TaskInstructions,
    instruction_set: str,
    exclude_self: bool,
    top_k: int,
    results: list[ModelResult],
) -> dict[str, Any]:
    """The report as plain JSON-ready data; differences are to the first model."""
    first = results[0].scores.mean
    models = []
    for result in results:
        models.append(
            {
                **dataclasses.asdict(result.model),
                "metrics": result.scores.mean,
                "difference_to_first": {key: value - first[key] for key, value in result.scores.mean.items()},
                "seconds": result.seconds,
                "vectors": result.vectors,
                "per_query": result.scores.per_query,
            }
        )
    published = PUBLISHED_NDCG_AT_10.get(task.beir_name) if task else None
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dataset": {
            "folder": str(dataset.folder),
            "split": dataset.split,
            "task": task.beir_name if task else None,
            "documents": len(dataset.corpus_ids),
            "queries": len(dataset.query_ids),
            "unjudged_queries_skipped": dataset.unjudged_queries,
            "judgments": sum(len(docs) for docs in dataset.qrels.values()),
        },
        "settings": {
            "top_k": top_k,
            "similarity": "exact cosine, float32",
            "instruction_set": instruction_set,
            "query_instruction": instructions.query,
            "corpus_instruction": instructions.corpus,
            "exclude_self": exclude_self,
            "metrics_library": "ir-measures (pytrec-eval-terrier: trec_eval)",
        },
        "models": models,
        "published_ndcg_at_10": {"figures_x100": published, "source": PUBLISHED_SOURCE} if published else None,
    }


def _x100(value: float) -> str:
    return f"{100 * value:.2f}"


def _signed_x100(value: float) -> str:
    return f"{100 * value:+.2f}"


def markdown(report: dict[str, Any]) -> str:
    """A human summary of the report: the table, what was run, and the published figures."""
    data, settings = report["dataset"], report["settings"]
    lines = [
        f"# Retrieval evaluation: {data['task'] or Path(data['folder']).name} ({data['split']})",
        "",
        f"{data['documents']} documents, {data['queries']} judged queries ({data['judgments']} judgments), "
        f"top {settings['top_k']} by {settings['similarity']}; figures x100, differences to the first row.",
        "",
    ]
    header = ["model", "archive", "precision", "pooling", "instructions"]
    for label in LABELS.values():
        header += [label, "Δ"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in report["models"]:
        row = [model["name"], model["archive"], model["precision"], model["pooling"], model["instruction_mode"]]
        for key in LABELS:
            row += [_x100(model["metrics"][key]), _signed_x100(model["difference_to_first"][key])]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"- query instruction: `{settings['query_instruction']!r}`; corpus instruction: "
        f"`{settings['corpus_instruction']!r}` (set: {settings['instruction_set']}); a model served with "
        "instruction_mode `ignore` drops them, `include` pools them, `exclude` reads them and pools the text only",
        f"- a query's own id excluded from its results: {'yes' if settings['exclude_self'] else 'no'}",
        f"- metrics: {settings['metrics_library']}",
    ]
    for model in report["models"]:
        seconds = ", ".join(f"{name} {value:.1f} s" for name, value in model["seconds"].items())
        vectors = model["vectors"]
        lines.append(
            f"- {model['name']}: {seconds}; vectors embedded {vectors['embedded']}, from cache {vectors['cached']}"
        )
        gate = model.get("gate")
        if gate:
            ranking = (
                f", top-10 overlap {gate['top10_overlap']:.3f}, nDCG@10 {gate['ndcg_at_10']:.4f} against fp32's "
                "ranking of the probe corpus"
                if "ndcg_at_10" in gate
                else ""
            )
            lines.append(
                f"  - build-time fidelity gate ({model['precision']}): {gate.get('verdict')}, min cosine "
                f"{gate.get('min_cosine')} to fp32 (floor {gate.get('floor')}){ranking}"
            )
    published = report["published_ndcg_at_10"]
    if published:
        figures = ", ".join(f"{name} {value:.2f}" for name, value in published["figures_x100"].items())
        lines += [
            "",
            f"Published nDCG@10 for {data['task']}: {figures} ({published['source']}). "
            "They compare with ours only on the same full split and instructions.",
        ]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.md`` into ``out_dir``, both or neither."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = (out_dir / f"{stem}.json", out_dir / f"{stem}.md")
    contents = (json.dumps(report, indent=2) + "\n", markdown(report))
    temporaries = [target.with_name(target.name + ".part") for target in targets]
    try:
        for temporary, content in zip(temporaries, contents, strict=True):
            temporary.write_text(content, encoding="utf-8")
        for temporary, target in zip(temporaries, targets, strict=True):
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
    return targets
