"""Build the INSTRUCTOR-format test model (``tiny``) or instructor-base's shape (``base``), offline."""

import argparse

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.tiny_model import SHAPES, build_test_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="folder to write")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    args = parser.parse_args()
    print(build_test_model(args.target, args.shape))
