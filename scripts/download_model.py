"""Download a hub model (or build the tiny one) into ``models/`` and print its folder.

The same as ``python -m toolkit download``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("download"))
