"""Lay out a KServe storage folder (config/config.properties, model-store/NAME.mar) from a built archive.

The same as ``python -m toolkit kserve-storage``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("kserve-storage"))
