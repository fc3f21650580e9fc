"""Print a model's description (settings and workers) as JSON."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import describe_main

if __name__ == "__main__":
    raise SystemExit(describe_main())
