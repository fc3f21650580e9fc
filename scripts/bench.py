"""make bench: the encoder's limit, an upstream-style baseline and our server, side by side."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
