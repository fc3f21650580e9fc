"""Build the image (make image): Docker where an engine answers, else podman with this machine's settings."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.image_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
