"""Build the archive, start TorchServe (once), (re-)register the model and wait until it answers."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import serve_main

if __name__ == "__main__":
    raise SystemExit(serve_main())
