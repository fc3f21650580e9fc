"""Register an archive from the model store through the Management API."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import register_main

if __name__ == "__main__":
    raise SystemExit(register_main())
