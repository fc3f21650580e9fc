"""Resolving MODEL=: the demo, the tiny model, a folder, and the Hub (mocked: it is unreachable here)."""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import httpx2
import pytest

from handler.settings import InstructionMode
from toolkit.models import model_source
from toolkit.models.model_source import ModelSourceError, resolve, select_hub_files

INSTRUCTOR_LARGE_FILES = [
    ".gitattributes",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/pytorch_model.bin",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "pytorch_model.bin",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "tokenizer.json",
    "tokenizer_config.json",
]


def test_demo_is_minilm_with_instructions_ignored(tmp_path: Path) -> None:
    source = resolve("demo", tmp_path)
    assert (source.path / "model.safetensors").is_file()
    assert source.instruction_mode is InstructionMode.IGNORE
    assert "offline demo" in source.label and "instructions are ignored" in source.label


def test_local_folder_defaults_to_instructor_semantics(tmp_path: Path, tiny_model_dir: Path) -> None:
    source = resolve(str(tiny_model_dir), tmp_path)
    assert source.path == tiny_model_dir.resolve() and source.instruction_mode is InstructionMode.EXCLUDE
    assert resolve(str(tiny_model_dir), tmp_path, mode="include").instruction_mode is InstructionMode.INCLUDE


def test_unknown_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="neither demo, tiny, an existing folder nor a hub id"):
        resolve("./no/such/folder", tmp_path)


def test_hub_file_selection_prefers_safetensors() -> None:
    selected = select_hub_files(INSTRUCTOR_LARGE_FILES)
    assert "pytorch_model.bin" in selected and "README.md" not in selected and ".gitattributes" not in selected
    assert "2_Dense/pytorch_model.bin" in selected and "spiece.model" in selected
    with_safetensors = select_hub_files([*INSTRUCTOR_LARGE_FILES, "model.safetensors"])
    assert "model.safetensors" in with_safetensors and "pytorch_model.bin" not in with_safetensors


def test_hub_file_selection_refuses_non_sentence_transformers_repo() -> None:
    with pytest.raises(ModelSourceError, match=re.escape("no modules.json")):
        select_hub_files(["config.json", "model.safetensors"])


def test_hub_download_asks_for_the_selected_files(tmp_path: Path) -> None:
    with mock.patch("huggingface_hub.HfApi") as api, mock.patch("huggingface_hub.snapshot_download") as download:
        api.return_value.list_repo_files.return_value = INSTRUCTOR_LARGE_FILES
        source = resolve("hkunlp/instructor-large", tmp_path, revision="abc123")
    api.return_value.list_repo_files.assert_called_once_with("hkunlp/instructor-large", revision="abc123")
    download.assert_called_once_with(
        "hkunlp/instructor-large",
        revision="abc123",
        local_dir=tmp_path / "hkunlp--instructor-large",
        allow_patterns=select_hub_files(INSTRUCTOR_LARGE_FILES),
    )
    assert source.instruction_mode is InstructionMode.EXCLUDE


def test_completed_download_is_reused_offline(tmp_path: Path) -> None:
    with mock.patch("huggingface_hub.HfApi") as api, mock.patch("huggingface_hub.snapshot_download"):
        api.return_value.list_repo_files.return_value = INSTRUCTOR_LARGE_FILES
        first = resolve("hkunlp/instructor-large", tmp_path)
    with mock.patch("huggingface_hub.HfApi") as offline:
        offline.return_value.list_repo_files.side_effect = httpx2.ConnectError("Name or service not known")
        assert resolve("hkunlp/instructor-large", tmp_path).path == first.path
        with pytest.raises(ModelSourceError, match="cannot download"):
            resolve("hkunlp/instructor-large", tmp_path, revision="other")


def test_unreachable_hub_says_what_to_do(tmp_path: Path) -> None:
    with mock.patch("huggingface_hub.HfApi") as api:
        api.return_value.list_repo_files.side_effect = httpx2.ConnectError("Name or service not known")
        with pytest.raises(ModelSourceError) as raised:
            model_source.download_from_hub("hkunlp/instructor-large", tmp_path)
    assert "cannot download hkunlp/instructor-large" in str(raised.value)
    assert "MODEL=DIR" in str(raised.value)
