"""Build the archive, start TorchServe (once), (re-)register the model and wait until it answers.

The same as ``python -m toolkit serve``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("serve"))
