"""Set a model's worker count: PUT /models/NAME?min_worker=&max_worker=."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import scale_main

if __name__ == "__main__":
    raise SystemExit(scale_main())
