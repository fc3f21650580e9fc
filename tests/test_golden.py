"""The encoder against golden vectors made once by the original INSTRUCTOR.encode.

tests/golden/tiny_instructor.json was written by scripts/make_golden_vectors.py in the legacy
environment (requirements-legacy.txt: sentence-transformers 2.2.2, InstructorEmbedding 1.0.1)
from the deterministic tiny model; `make golden` regenerates it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from tests.cases import PARITY_CASES, fingerprint
from tests.conftest import REPO_ROOT

GOLDEN = json.loads((Path(__file__).parent / "golden" / "tiny_instructor.json").read_text())
TOLERANCE = 1e-5


def legacy_pins() -> dict[str, str]:
    """``name==version`` lines of requirements-legacy.txt, the stack `make golden` installs."""
    lines = (REPO_ROOT / "requirements-legacy.txt").read_text().splitlines()
    pins = (line.split("#", 1)[0].strip() for line in lines)
    return dict(pin.split("==", 1) for pin in pins if "==" in pin)


def test_golden_file_was_made_by_the_pinned_legacy_stack() -> None:
    """The recorded versions are those requirements-legacy.txt pins: change a pin, regenerate the file."""
    pins = legacy_pins()
    made_with = GOLDEN["made_with"]
    assert made_with["InstructorEmbedding"] == pins["InstructorEmbedding"] == "1.0.1"
    assert made_with["sentence_transformers"] == pins["sentence-transformers"] == "2.2.2"
    assert made_with["transformers"] == pins["transformers"]
    assert made_with["torch"].split("+", 1)[0] == pins["torch"]


def test_golden_script_records_installed_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The script reads versions from package metadata, never from a fallback default."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
    script = importlib.import_module("make_golden_vectors")
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: f"9.9.9-{dist}")
    versions = script.stack_versions()
    assert versions["InstructorEmbedding"] == "9.9.9-InstructorEmbedding"
    assert versions["sentence_transformers"] == "9.9.9-sentence-transformers"
    assert versions["torch"] == "9.9.9-torch"


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
