"""Validate deploy/ manifests offline: Kubernetes kinds with kubernetes-validate, KServe kinds with its CRD schema."""

import sys
from pathlib import Path

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.kserve import ManifestError, validate_files

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent / "deploy"
    try:
        print(f"{validate_files(sorted(root.rglob('*.yaml')))} manifests valid")
    except ManifestError as err:
        sys.exit(f"error: {err}")
