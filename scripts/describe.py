"""Print a model's description (settings and workers) as JSON.

The same as ``python -m toolkit describe``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("describe"))
