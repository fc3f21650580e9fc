"""The Docker image's HEALTHCHECK: /ping with the inference key from key_file.json."""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.healthcheck import main

if __name__ == "__main__":
    raise SystemExit(main())
