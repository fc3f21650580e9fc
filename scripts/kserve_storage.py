"""Lay out a KServe storage folder (config/config.properties, model-store/NAME.mar) from a built archive."""

import argparse
import sys
from pathlib import Path

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.kserve import lay_out_storage

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archive", type=Path, default=Path("model_store/instructor.mar"))
    parser.add_argument("--name", default="instructor", help="model name KServe routes to")
    parser.add_argument("storage", type=Path, help="folder to upload to the InferenceService storageUri")
    args = parser.parse_args()
    try:
        print(lay_out_storage(args.archive, args.storage, args.name))
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
