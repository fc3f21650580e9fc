"""Build the TorchServe archive for a model into ``model_store/``.

The same as ``python -m toolkit build``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("build"))
