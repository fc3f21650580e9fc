"""Build the TorchServe archive for a model into ``model_store/``."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import build_main

if __name__ == "__main__":
    raise SystemExit(build_main())
