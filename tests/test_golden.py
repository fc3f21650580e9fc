"""The encoder against golden vectors made once by the original INSTRUCTOR.encode.

tests/golden/tiny_instructor.json was written by scripts/make_golden_vectors.py in the legacy
environment (requirements-legacy.txt: sentence-transformers 2.2.2, InstructorEmbedding 1.0.1)
from the deterministic tiny model; `make golden` regenerates it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from tests.cases import PARITY_CASES, fingerprint

GOLDEN = json.loads((Path(__file__).parent / "golden" / "tiny_instructor.json").read_text())
TOLERANCE = 1e-5


def test_golden_file_was_made_by_the_legacy_stack() -> None:
    assert GOLDEN["made_with"]["sentence_transformers"] == "2.2.2"
    assert GOLDEN["made_with"]["InstructorEmbedding"] == "1.0.1"


def test_tiny_model_is_the_one_the_golden_vectors_were_made_from(tiny_model_dir: Path) -> None:
    assert fingerprint(tiny_model_dir) == GOLDEN["model_fingerprint"], (
        "the tiny model builder changed: run `make golden` and review the diff"
    )


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_matches_original_instructor_encode(case: str, tiny_encoder: InstructorEncoder) -> None:
    golden = GOLDEN["cases"][case]
    assert golden["pairs"] == PARITY_CASES[case]
    actual = tiny_encoder.encode([tuple(pair) for pair in golden["pairs"]])
    expected = torch.tensor(golden["vectors"])
    assert actual.shape == expected.shape
    assert float((actual - expected).abs().max()) <= TOLERANCE
