"""``max_length``: the model's own ``max_seq_length`` by default, never more than its position embeddings hold."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from handler.encoder import InstructorEncoder
from handler.errors import ModelConfigError
from handler.model_files import max_length_for, position_limit, read_layout
from handler.settings import HandlerSettings
from tests.conftest import EXCLUDE
from toolkit.build.archive import build_archive

IGNORE = HandlerSettings.from_mapping({"instruction_mode": "ignore"})


def archived_max_length(archive: Path) -> int:
    return yaml.safe_load(zipfile.ZipFile(archive).read("model-config.yaml"))["handler"]["max_length"]


def test_unset_max_length_is_the_models_own(minilm_dir: Path, tiny_model_dir: Path) -> None:
    assert max_length_for(None, read_layout(minilm_dir)) == 256  # all-MiniLM-L6-v2's sentence_bert_config.json
    assert max_length_for(None, read_layout(tiny_model_dir)) == 512  # hkunlp folders say 512


def test_archive_records_the_models_own_max_length(tmp_path: Path, minilm_dir: Path) -> None:
    assert archived_max_length(build_archive(minilm_dir, tmp_path, IGNORE)) == 256


def test_worker_serves_the_models_own_max_length(minilm_dir: Path) -> None:
    encoder = InstructorEncoder.from_folder(minilm_dir, IGNORE)
    assert encoder.settings.max_length == 256
    (row,) = encoder.tokenize([("", "word " * 400)])
    assert len(row.input_ids) == 256 and row.truncated


def test_max_length_above_the_position_embeddings_is_refused_at_build(tmp_path: Path, minilm_dir: Path) -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "ignore", "max_length": 1024})
    with pytest.raises(ModelConfigError, match=re.escape("max_length 1024")) as raised:
        build_archive(minilm_dir, tmp_path / "store", settings)
    assert "hold 512 tokens" in str(raised.value)
    assert not list((tmp_path / "store").glob("*.mar"))


def test_explicit_max_length_within_the_limit_is_kept(tmp_path: Path, minilm_dir: Path, tiny_model_dir: Path) -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "ignore", "max_length": 512})
    assert archived_max_length(build_archive(minilm_dir, tmp_path / "a", settings)) == 512
    # T5 has relative positions: no table to overflow.
    long_t5 = HandlerSettings.from_mapping({"instruction_mode": "exclude", "max_length": 1024})
    assert archived_max_length(build_archive(tiny_model_dir, tmp_path / "b", long_t5)) == 1024
    assert position_limit(tiny_model_dir) is None


def test_offset_position_tables_count_the_padding_offset(tmp_path: Path, minilm_dir: Path) -> None:
    """MPNet and RoBERTa start positions after the padding index: 514 entries hold 512 tokens."""
    model = tmp_path / "mpnet-like"
    shutil.copytree(minilm_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(
        json.dumps(config | {"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1})
    )
    assert position_limit(model) == 512


def test_unset_max_length_keeps_the_micro_batch_check(tiny_model_dir: Path) -> None:
    """Resolved at load, the setting is still checked against the micro-batch token bound."""
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "micro_batch_tokens": 100})
    with pytest.raises(ModelConfigError, match="micro_batch_tokens"):
        InstructorEncoder.from_folder(tiny_model_dir, settings)
    assert EXCLUDE.max_length is None
