"""Build the INSTRUCTOR-format test model (``tiny``) or instructor-base's shape (``base``), offline.

The same as ``python -m toolkit test-model``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("test-model"))
