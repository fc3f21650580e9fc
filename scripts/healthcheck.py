"""The Docker image's HEALTHCHECK: /ping with the inference key from key_file.json.

The same as ``python -m toolkit healthcheck``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("healthcheck"))
