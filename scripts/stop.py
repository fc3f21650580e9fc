"""Stop the TorchServe that ``make serve`` started."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.cli import stop_main

if __name__ == "__main__":
    raise SystemExit(stop_main())
