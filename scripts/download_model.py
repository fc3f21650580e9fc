"""Download a hub model (or build the tiny one) into ``models/`` and print its folder."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import download_main

if __name__ == "__main__":
    raise SystemExit(download_main())
