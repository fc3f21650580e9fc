"""make bench: the encoder's limit, an upstream-style baseline and our server, side by side.

The same as ``python -m toolkit bench``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("bench"))
