"""Score served models on a BEIR-format folder: nDCG@10, Recall@100, MRR@10 (``make eval``)."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.evaluation.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main())
