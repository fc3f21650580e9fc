"""The Docker image's entrypoint: build the archive when missing, run TorchServe in the foreground.

The same as ``python -m toolkit container``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("container"))
