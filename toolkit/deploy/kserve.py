"""Lay out a KServe storage folder from a built archive, and validate deployment manifests offline.

KServe's TorchServe runtimes expect ``config/config.properties`` and ``model-store/*.mar`` under
the storage URI. The config comes from ``deploy/kserve/config.properties`` with a
``model_snapshot`` that loads the archive at start with the worker settings the archive carries.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from toolkit import REPO_ROOT
from toolkit.errors import ToolkitError, reporting_errors
from toolkit.serve.server import with_overrides

KSERVE_DIR = REPO_ROOT / "deploy" / "kserve"
# openAPIV3Schema of KServe's CRDs (v0.15.0, Apache-2.0), gzipped JSON: validation needs no network.
CRD_SCHEMAS = {
    "InferenceService": KSERVE_DIR / "schemas" / "inferenceservices.v0.15.0.json.gz",
    "ClusterServingRuntime": KSERVE_DIR / "schemas" / "clusterservingruntimes.v0.15.0.json.gz",
}
KUBERNETES_VERSION = "1.31.0"


class ManifestError(ToolkitError):
    """A manifest does not validate; the message names the document and the field."""


def archive_model_config(archive: Path) -> dict[str, Any]:
    """The ``model-config.yaml`` inside a .mar (zip) or a no-archive folder."""
    if archive.is_dir():
        return yaml.safe_load((archive / "model-config.yaml").read_text())
    with zipfile.ZipFile(archive) as bundle:
        return yaml.safe_load(bundle.read("model-config.yaml"))


def model_snapshot(name: str, archive_name: str, model_config: dict[str, Any]) -> str:
    """TorchServe's start-up snapshot: load ``archive_name`` as ``name`` with the archive's worker caps."""
    version = {
        "defaultVersion": True,
        "marName": archive_name,
        "minWorkers": model_config["minWorkers"],
        "maxWorkers": model_config["maxWorkers"],
        "batchSize": model_config["batchSize"],
        "maxBatchDelay": model_config["maxBatchDelay"],
        "responseTimeout": model_config["responseTimeout"],
    }
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {name: {"1.0": version}}}
    return json.dumps(snapshot, separators=(",", ":"))


def lay_out_storage(archive: Path, storage: Path, name: str = "instructor") -> Path:
    """Write ``storage/config/config.properties`` and ``storage/model-store/<archive>``."""
    if not archive.exists():
        raise FileNotFoundError(f"{archive} does not exist: build it first (make archive)")
    config_dir, store = storage / "config", storage / "model-store"
    config_dir.mkdir(parents=True, exist_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    target = store / archive.name
    if archive.is_dir():
        shutil.copytree(archive, target, dirs_exist_ok=True)
    else:
        shutil.copy2(archive, target)
    snapshot = model_snapshot(name, archive.name, archive_model_config(archive))
    template = (KSERVE_DIR / "config.properties").read_text()
    (config_dir / "config.properties").write_text(with_overrides(template, {"model_snapshot": snapshot}))
    return storage


def _crd_schema(kind: str, api_version: str) -> dict[str, Any]:
    document = json.loads(gzip.decompress(CRD_SCHEMAS[kind].read_bytes()))
    version = api_version.rsplit("/", 1)[-1]
    if version not in document["versions"]:
        raise ManifestError(f"{kind} {api_version}: the schema knows only {sorted(document['versions'])}")
    return document["versions"][version]


def validate_manifest(document: dict[str, Any], source: str = "manifest") -> None:
    """Validate one manifest: Kubernetes kinds strictly with kubernetes-validate, KServe kinds
    against the CRD schema.

    Raises:
        ManifestError: the document does not validate.
    """
    kind = document.get("kind")
    where = f"{source}: {kind} {document.get('metadata', {}).get('name', '?')}"
    try:
        if kind in CRD_SCHEMAS:
            jsonschema.validate(document, _crd_schema(kind, document["apiVersion"]))
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except jsonschema.ValidationError as err:  # kubernetes_validate's errors subclass it
        path = ".".join(str(part) for part in err.absolute_path)
        raise ManifestError(f"{where}: {path}: {err.message}") from None


def validate_files(paths: list[Path]) -> int:
    """Validate every document of every file; returns how many were checked."""
    count = 0
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                validate_manifest(document, str(path))
                count += 1
    return count


def storage_main(argv: Sequence[str] | None = None) -> int:
    """Lay out a KServe storage folder (config/config.properties, model-store/NAME.mar) from a built archive."""
    parser = argparse.ArgumentParser(description=storage_main.__doc__)
    parser.add_argument("--archive", type=Path, default=Path("model_store/instructor.mar"))
    parser.add_argument("--name", default="instructor", help="model name KServe routes to")
    parser.add_argument("storage", type=Path, help="folder to upload to the InferenceService storageUri")
    args = parser.parse_args(argv)

    def lay_out() -> int:
        print(lay_out_storage(args.archive, args.storage, args.name))
        return 0

    return reporting_errors(lay_out, also=(FileNotFoundError,))


def validate_main(argv: Sequence[str] | None = None) -> int:
    """Validate every manifest under deploy/ offline (Kubernetes schemas and KServe's CRDs)."""
    argparse.ArgumentParser(description=validate_main.__doc__).parse_args(argv)

    def validate() -> int:
        print(f"{validate_files(sorted((REPO_ROOT / 'deploy').rglob('*.yaml')))} manifests valid")
        return 0

    return reporting_errors(validate)
