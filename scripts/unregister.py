"""Unregister a model: DELETE /models/NAME.

The same as ``python -m toolkit unregister``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("unregister"))
