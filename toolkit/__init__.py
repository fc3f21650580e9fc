"""Tooling around the handler, grouped by job: models, build, serve, deploy, bench, evaluation.

``python -m toolkit <command>`` runs any of its commands (``python -m toolkit --help`` lists them).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
