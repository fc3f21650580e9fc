"""The archive builder: what goes into the .mar, the worker caps, and clear failures."""

from __future__ import annotations

import errno
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from handler.encoder import InstructorEncoder
from handler.engines.torch_export import store_transformer_weights
from handler.errors import ModelConfigError
from handler.settings import HandlerSettings
from tests.conftest import EXCLUDE, NATIVE_BF16_FLAGS
from toolkit.build.archive import ArchiveError, WorkerConfig, build_archive, model_config_yaml, stage_model


def test_mar_is_self_contained(tmp_path: Path, tiny_model_dir: Path) -> None:
    archive = build_archive(tiny_model_dir, tmp_path, EXCLUDE)
    assert archive == tmp_path / "instructor.mar"
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"torchserve_handler.py", "model-config.yaml", "MAR-INF/MANIFEST.json"} <= names
    assert {"handler/encoder.py", "handler/request_parsing.py", "handler/torchserve_handler.py"} <= names
    assert {"model/config.json", "model/model.safetensors", "model/modules.json", "model/2_Dense/config.json"} <= names
    assert not any("__pycache__" in name for name in names)


def test_model_config_caps_workers_and_carries_handler_settings(tmp_path: Path, tiny_model_dir: Path) -> None:
    archive = build_archive(tiny_model_dir, tmp_path, EXCLUDE, WorkerConfig(batch_size=16, max_batch_delay_ms=5))
    config = yaml.safe_load(zipfile.ZipFile(archive).read("model-config.yaml"))
    assert config["minWorkers"] == 1 and config["maxWorkers"] == 1
    assert config["batchSize"] == 16 and config["maxBatchDelay"] == 5
    assert config["responseTimeout"] == 120 and config["startupTimeout"] == 300
    assert config["handler"]["instruction_mode"] == "exclude"


@pytest.mark.parametrize(("archive_format", "expected"), [("no-archive", "instructor"), ("tgz", "instructor.tar.gz")])
def test_other_formats(tmp_path: Path, tiny_model_dir: Path, archive_format: str, expected: str) -> None:
    archive = build_archive(tiny_model_dir, tmp_path, EXCLUDE, archive_format=archive_format)
    assert archive == tmp_path / expected and archive.exists()
    if archive_format == "no-archive":
        assert (archive / "model" / "model.safetensors").is_file()
        assert (archive / "handler" / "encoder.py").is_file()


def test_folder_that_is_not_a_model_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("hello")
    with pytest.raises(ModelConfigError, match=re.escape("is not a model folder: config.json is missing")):
        build_archive(tmp_path / "notes", tmp_path / "store", EXCLUDE)
    assert not (tmp_path / "store").exists()


def test_bad_format_and_worker_range(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ArchiveError, match="archive format 'zip'"):
        build_archive(tiny_model_dir, tmp_path, EXCLUDE, archive_format="zip")
    with pytest.raises(ArchiveError, match="min_workers"):
        model_config_yaml(WorkerConfig(min_workers=2, max_workers=1), EXCLUDE)


def _float_dtypes(path: Path) -> set[torch.dtype]:
    return {tensor.dtype for tensor in load_file(str(path)).values() if tensor.is_floating_point()}


def test_bf16_archive_stores_transformer_weights_in_bf16(tmp_path: Path, tiny_model_dir: Path) -> None:
    bf16 = HandlerSettings.from_mapping({"instruction_mode": "exclude", "precision": "bf16"})
    archive = build_archive(tiny_model_dir, tmp_path, bf16, archive_format="no-archive")
    assert _float_dtypes(archive / "model" / "model.safetensors") == {torch.bfloat16}
    assert _float_dtypes(archive / "model" / "2_Dense" / "model.safetensors") == {torch.float32}
    assert _float_dtypes(tiny_model_dir / "model.safetensors") == {torch.float32}, "the source model was modified"
    assert yaml.safe_load((archive / "model-config.yaml").read_text())["handler"]["precision"] == "bf16"
    stored = InstructorEncoder.from_folder(archive / "model", bf16, cpu_flags=NATIVE_BF16_FLAGS)
    converted_at_load = InstructorEncoder.from_folder(tiny_model_dir, bf16, cpu_flags=NATIVE_BF16_FLAGS)
    pairs = [("Represent the sentence:", "Weights stored in bf16 load as they are.")]
    assert torch.equal(stored.encode(pairs), converted_at_load.encode(pairs))


def test_bin_weights_become_bf16_safetensors(tmp_path: Path) -> None:
    state = {"shared.weight": torch.randn(4, 3)}
    state["encoder.embed_tokens.weight"] = state["shared.weight"]  # tied, as in T5 .bin files
    state["position"] = torch.arange(3)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (written,) = store_transformer_weights(tmp_path, torch.bfloat16)
    assert written == tmp_path / "model.safetensors" and not (tmp_path / "pytorch_model.bin").exists()
    loaded = load_file(str(written))
    assert loaded["shared.weight"].dtype == torch.bfloat16 and loaded["position"].dtype == torch.int64
    assert torch.equal(loaded["shared.weight"], loaded["encoder.embed_tokens.weight"])


def hub_cache_snapshot(model_dir: Path, root: Path) -> Path:
    """``model_dir`` laid out as the Hugging Face cache does: relative symlinks into ``blobs/``."""
    snapshot = root / "snapshots" / "0123abc"
    for index, path in enumerate(sorted(path for path in model_dir.rglob("*") if path.is_file())):
        blob = root / "blobs" / f"blob{index}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, blob)
        link = snapshot / path.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * len(link.relative_to(root).parts[:-1])) / "blobs" / blob.name)
    return snapshot


@pytest.mark.parametrize("layout", ["plain folder", "hub cache symlinks"])
def test_staging_hard_links_and_copies_when_links_fail(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    source = shutil.copytree(tiny_model_dir, tmp_path / "plain")
    (source / "README.md").write_text("model card: never read by the server")
    if layout == "hub cache symlinks":
        source = hub_cache_snapshot(source, tmp_path / "cache")
        assert (source / "config.json").is_symlink()
    files = sorted(path.relative_to(source) for path in source.rglob("*") if path.is_file() and path.suffix != ".md")

    def staged_files(target: Path) -> list[Path]:
        assert not any(path.is_symlink() for path in target.rglob("*"))
        return sorted(path.relative_to(target) for path in target.rglob("*") if path.is_file())

    stage_model(source, tmp_path / "linked")
    assert staged_files(tmp_path / "linked") == files
    assert all((tmp_path / "linked" / name).samefile(source / name) for name in files)

    def cross_device(self: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(self))

    monkeypatch.setattr(Path, "hardlink_to", cross_device)
    copied = tmp_path / "copied"
    stage_model(source, copied)
    assert staged_files(copied) == files
    for name in files:
        assert not (copied / name).samefile(source / name)
        assert (copied / name).read_bytes() == (source / name).read_bytes()


def test_archiver_failure_is_an_archive_error_and_leaves_no_staging(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "instructor").write_text("a file where the no-archive folder goes")
    with pytest.raises(ArchiveError, match=r"torch-model-archiver failed \(1\): (.|\n)*File exists"):
        build_archive(tiny_model_dir, store, EXCLUDE, archive_format="no-archive")
    assert [path.name for path in store.iterdir()] == ["instructor"]
    assert (store / "instructor").read_text() == "a file where the no-archive folder goes"


def test_missing_archiver_is_an_archive_error(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python whose bin folder lacks torch-model-archiver (not installed from requirements-serve.txt)."""
    monkeypatch.setattr("toolkit.build.archive.sys.executable", str(tmp_path / "bin" / "python"))
    with pytest.raises(ArchiveError, match="cannot run torch-model-archiver"):
        build_archive(tiny_model_dir, tmp_path / "store", EXCLUDE)
    assert list((tmp_path / "store").iterdir()) == []
