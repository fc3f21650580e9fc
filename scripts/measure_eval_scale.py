"""make eval at 100,000 documents without a model: time per step and peak memory."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.evaluation.scale import main

if __name__ == "__main__":
    raise SystemExit(main())
