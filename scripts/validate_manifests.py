"""Validate deploy/ manifests offline: Kubernetes kinds with kubernetes-validate, KServe kinds with its CRD schema.

The same as ``python -m toolkit validate-manifests``.
"""

import _bootstrap  # noqa: F401  (repository root on sys.path)

from toolkit.commands import run_command

if __name__ == "__main__":
    raise SystemExit(run_command("validate-manifests"))
