"""Pooling read from the model's own 1_Pooling/config.json; parity with sentence-transformers per mode."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from handler.encoder import InstructorEncoder
from handler.errors import ModelConfigError
from handler.model_files import read_layout
from handler.pooling import PoolingMode, cls_pool, masked_max_pool, masked_mean_pool, pool, read_pooling_mode
from handler.settings import HandlerSettings
from tests.conftest import EXCLUDE
from tests.model_variants import with_pooling
from toolkit.build.archive import build_archive

INCLUDE = HandlerSettings.from_mapping({"instruction_mode": "include", "max_length": 256})
TEXTS = [
    "Plain sentence.",
    "Another, longer sentence about embeddings, retrieval systems and the rankings they produce.",
    "Représentation vectorielle: naïve façade, Größe, déjà vu.",
]


def write_pooling_config(path: Path, **flags: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"word_embedding_dimension": 4} | flags))
    return path


@pytest.mark.parametrize("mode", list(PoolingMode))
def test_matches_sentence_transformers_encode(mode: PoolingMode, minilm_dir: Path, tmp_path: Path) -> None:
    model = with_pooling(minilm_dir, tmp_path / mode.name, mode)
    assert read_layout(model).pooling is mode
    expected = SentenceTransformer(str(model), device="cpu").encode(TEXTS, convert_to_tensor=True)
    actual = InstructorEncoder.from_folder(model, INCLUDE).encode([("", text) for text in TEXTS])
    assert float((actual - expected).abs().max()) <= 1e-5


def test_modes_give_different_vectors(minilm_dir: Path, tmp_path: Path) -> None:
    """Guards the parity test: had the mode been ignored, every variant would equal the mean."""
    vectors = {
        mode: InstructorEncoder.from_folder(with_pooling(minilm_dir, tmp_path / mode.name, mode), INCLUDE).encode(
            [("", TEXTS[1])]
        )
        for mode in PoolingMode
    }
    assert float(vectors[PoolingMode.CLS] @ vectors[PoolingMode.MEAN].T) < 0.99
    assert float(vectors[PoolingMode.MAX] @ vectors[PoolingMode.MEAN].T) < 0.99


def test_cls_and_max_poolers_on_hand_made_tensors() -> None:
    embeddings = torch.tensor([[[1.0, 5.0], [3.0, 0.0], [9.0, 9.0]], [[2.0, -1.0], [-4.0, -3.0], [99.0, 99.0]]])
    attention = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert cls_pool(embeddings).tolist() == [[1.0, 5.0], [2.0, -1.0]]
    assert masked_max_pool(embeddings, attention).tolist() == [[9.0, 9.0], [2.0, -1.0]]


def test_pool_runs_the_models_own_mode_and_only_the_mean_skips_instructions() -> None:
    embeddings = torch.tensor([[[1.0, 5.0], [3.0, 0.0], [9.0, 9.0]], [[2.0, -1.0], [-4.0, -3.0], [99.0, 99.0]]])
    attention = torch.tensor([[1, 1, 1], [1, 1, 0]])
    context_lens = torch.tensor([1, 0])
    assert torch.equal(pool(PoolingMode.CLS, embeddings, attention, context_lens), cls_pool(embeddings))
    assert torch.equal(
        pool(PoolingMode.MAX, embeddings, attention, context_lens), masked_max_pool(embeddings, attention)
    )
    mean = masked_mean_pool(embeddings, attention, context_lens)
    assert torch.equal(pool(PoolingMode.MEAN, embeddings, attention, context_lens), mean)
    assert mean.tolist() == [[6.0, 4.5], [-1.0, -2.0]]


@pytest.mark.parametrize(
    "flags",
    [
        {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
        {"pooling_mode_mean_sqrt_len_tokens": True},
        {"pooling_mode_weightedmean_tokens": True},
        {"pooling_mode_mean_tokens": False},
    ],
)
def test_unsupported_or_ambiguous_pooling_is_refused(tmp_path: Path, flags: dict[str, bool]) -> None:
    path = write_pooling_config(tmp_path / "1_Pooling" / "config.json", **flags)
    with pytest.raises(ModelConfigError, match=re.escape(f"{path} enables")):
        read_pooling_mode(path)


def test_missing_or_broken_pooling_config(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=re.escape("config.json is missing")):
        read_pooling_mode(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="is not valid JSON"):
        read_pooling_mode(tmp_path / "config.json")


def test_instruction_exclusion_needs_mean_pooling(minilm_dir: Path, tmp_path: Path) -> None:
    """INSTRUCTOR's instruction mask is a mean over the text tokens: refused with CLS, at load and at build."""
    model = with_pooling(minilm_dir, tmp_path / "cls", PoolingMode.CLS)
    with pytest.raises(ModelConfigError, match="instruction_mode 'exclude' needs mean pooling"):
        InstructorEncoder.from_folder(model, EXCLUDE)
    with pytest.raises(ModelConfigError, match="instruction_mode 'exclude' needs mean pooling"):
        build_archive(model, tmp_path / "store", EXCLUDE)
    assert not (tmp_path / "store" / "instructor.mar").exists()
