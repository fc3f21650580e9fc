"""make eval at 100,000 documents without a model: time per step and peak memory.

The same as ``python -m toolkit eval-scale``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("eval-scale"))
