"""Probe one worker (memory, load time, pairs/s) for a model shape (random weights) or folder; prints JSON.

The same as ``python -m toolkit capacity``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("capacity"))
