"""The Docker image's entrypoint: build the archive when missing, run TorchServe in the foreground."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.container import main

if __name__ == "__main__":
    raise SystemExit(main())
