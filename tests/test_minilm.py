"""The offline demo model, real all-MiniLM-L6-v2 weights, served with instructions ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings

IGNORE = HandlerSettings.from_mapping({"instruction_mode": "ignore"})


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> InstructorEncoder:
    return InstructorEncoder.from_folder(minilm_dir, IGNORE)


def test_related_sentences_score_higher(minilm: InstructorEncoder) -> None:
    query, related, unrelated = minilm.encode(
        [
            ("", "How do I bake sourdough bread at home?"),
            ("", "A beginner's guide to baking sourdough loaves in your kitchen."),
            ("", "The central bank raised interest rates by a quarter point."),
        ]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.3


def test_matches_sentence_transformers(minilm: InstructorEncoder, minilm_dir: Path) -> None:
    texts = ["Plain sentence.", "Another, longer sentence about embeddings and retrieval systems."]
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, convert_to_tensor=True)
    actual = minilm.encode([("", text) for text in texts])
    assert float((actual - expected).abs().max()) <= 1e-5


def test_instruction_is_ignored(minilm: InstructorEncoder) -> None:
    with_instruction, without = minilm.encode([("Represent the query:", "sourdough"), ("", "sourdough")])
    assert torch.equal(with_instruction, without)
