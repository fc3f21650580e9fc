"""Score served models on a BEIR-format folder: nDCG@10, Recall@100, MRR@10 (``make eval``).

The same as ``python -m toolkit evaluate``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("evaluate"))
