"""Build the image (make image): Docker where an engine answers, else podman with this machine's settings.

The same as ``python -m toolkit image``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("image"))
