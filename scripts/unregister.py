"""Unregister a model: DELETE /models/NAME."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import unregister_main

if __name__ == "__main__":
    raise SystemExit(unregister_main())
