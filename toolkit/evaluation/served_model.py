"""What exactly is served under a name: its archive, precision, instruction mode and pooling.

Read from the Management API (which archive the name was registered from) and from that
archive in the server's model store (``MAR-INF/MANIFEST.json``, ``model-config.yaml`` and the
model's ``1_Pooling/config.json``), whatever its format: ``.mar`` (zip), ``.tar.gz`` or a
``no-archive`` folder. The fingerprint changes whenever the archive is rebuilt, so cached
vectors never outlive the model that made them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from toolkit.evaluation.errors import ServedModelError
from toolkit.serve.management import ManagementClient, ManagementError

MANIFEST = "MAR-INF/MANIFEST.json"
MODEL_CONFIG = "model-config.yaml"
POOLING_CONFIG = "model/1_Pooling/config.json"
FIDELITY = "fidelity.json"
# What the report shows of the archive's fidelity gate (how far the mode moved vectors and rankings).
GATE_FIGURES = ("verdict", "min_cosine", "mean_cosine", "floor", "chosen")


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """One served endpoint, as the report and the vector cache name it."""

    name: str
    archive: str
    fingerprint: str
    precision: str
    instruction_mode: str
    pooling: str
    gate: dict[str, Any] | None = None

    @property
    def cache_key(self) -> str:
        """A folder name: readable prefix, then a digest of model, archive and precision."""
        digest = hashlib.sha256(f"{self.name}\0{self.archive}\0{self.fingerprint}\0{self.precision}".encode())
        return f"{self.name}-{self.precision}-{digest.hexdigest()[:16]}"


def _archive_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named files of an archive (zip, tar.gz or folder), matched by path suffix."""
    found: dict[str, bytes] = {}
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                found[name] = (path / name).read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                for name in names:
                    if member == name or member.endswith("/" + name):
                        found[name] = archive.read(member)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                for name in names:
                    if member.isfile() and (member.name == name or member.name.endswith("/" + name)):
                        handle = archive.extractfile(member)
                        if handle is not None:
                            found[name] = handle.read()
    else:
        raise ServedModelError(f"{path} is neither a .mar (zip), a .tar.gz nor an archive folder")
    return found


def read_archive(name: str, archive: str, model_store: Path) -> ServedModel:
    """Describe the archive ``archive`` of ``model_store`` served as ``name``.

    Raises:
        ServedModelError: the archive is absent or lacks its manifest or model-config.yaml.
    """
    path = model_store / archive
    if not path.exists():
        raise ServedModelError(
            f"{name} was registered from {archive!r}, which is not in the model store {model_store}: "
            "point --workdir/--config at the server that serves it"
        )
    members = _archive_members(path, (MANIFEST, MODEL_CONFIG, POOLING_CONFIG, FIDELITY))
    for required in (MANIFEST, MODEL_CONFIG):
        if required not in members:
            raise ServedModelError(f"{path} has no {required}: not an archive built by this project")
    handler_settings: dict[str, Any] = (yaml.safe_load(members[MODEL_CONFIG]) or {}).get("handler", {})
    pooling = "unknown"
    if POOLING_CONFIG in members:
        flags = json.loads(members[POOLING_CONFIG])
        enabled = [
            key.removeprefix("pooling_mode_")
            for key, value in flags.items()
            if key.startswith("pooling_mode") and value
        ]
        pooling = ",".join(enabled) or "none"
    size = path.stat().st_size if path.is_file() else 0
    fingerprint = hashlib.sha256(members[MANIFEST] + members[MODEL_CONFIG] + str(size).encode()).hexdigest()[:16]
    return ServedModel(
        name=name,
        archive=archive,
        fingerprint=fingerprint,
        precision=str(handler_settings.get("precision", "fp32")),
        instruction_mode=str(handler_settings.get("instruction_mode", "unknown")),
        pooling=pooling,
        gate=_gate_figures(members.get(FIDELITY)),
    )


def _gate_figures(raw: bytes | None) -> dict[str, Any] | None:
    """The build-time gate's figures (cosines, ranking) from ``fidelity.json``; None for ungated archives."""
    if raw is None:
        return None
    try:
        figures = json.loads(raw)
    except ValueError:
        return None
    gate = {key: figures[key] for key in GATE_FIGURES if key in figures}
    ranking = figures.get("ranking") or {}
    gate |= {key: ranking[key] for key in ("top10_overlap", "ndcg_at_10") if key in ranking}
    return gate


def describe_served(management: ManagementClient, name: str, model_store: Path) -> ServedModel:
    """The archive behind a registered name, read from the model store.

    Raises:
        ServedModelError: the name is not registered, or its archive cannot be read.
    """
    try:
        descriptions = management.describe(name)
    except ManagementError as err:
        if err.status == 404:
            raise ServedModelError(f"no model named {name!r} is registered (make serve NAME={name} ...)") from None
        raise ServedModelError(f"cannot describe {name!r}: {err}") from None
    archive = str(descriptions[0].get("modelUrl", ""))
    if not archive:
        raise ServedModelError(f"the Management API does not say which archive {name!r} was registered from")
    return read_archive(name, archive, model_store)
