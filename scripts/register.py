"""Register an archive from the model store through the Management API.

The same as ``python -m toolkit register``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("register"))
