"""Set a model's worker count: PUT /models/NAME?min_worker=&max_worker=.

The same as ``python -m toolkit scale``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("scale"))
