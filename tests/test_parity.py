"""Parity with InstructorEmbedding 1.0.1's own code, on the tiny model and on instructor-base's shape.

The reference (toolkit/models/reference.py) executes INSTRUCTOR_Transformer.tokenize / forward and
INSTRUCTOR_Pooling; nothing in it re-implements the semantics under test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from tests.cases import PARITY_CASES
from tests.conftest import EXCLUDE
from toolkit.models.reference import ReferenceInstructor

pytestmark = pytest.mark.parity

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["tiny", "base-shape"])
def encoder_and_reference(
    request: pytest.FixtureRequest, tiny_model_dir: Path, base_shape_dir: Path
) -> tuple[InstructorEncoder, ReferenceInstructor]:
    model_dir = tiny_model_dir if request.param == "tiny" else base_shape_dir
    return InstructorEncoder.from_folder(model_dir, EXCLUDE), ReferenceInstructor(model_dir)


def max_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return float((actual - expected).abs().max())


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_matches_reference(case: str, encoder_and_reference: tuple[InstructorEncoder, ReferenceInstructor]) -> None:
    encoder, reference = encoder_and_reference
    pairs = PARITY_CASES[case]
    assert max_difference(encoder.encode([tuple(pair) for pair in pairs]), reference.encode(pairs)) <= TOLERANCE


def test_batch_equals_single(encoder_and_reference: tuple[InstructorEncoder, ReferenceInstructor]) -> None:
    encoder, _ = encoder_and_reference
    pairs = [tuple(pair) for pair in PARITY_CASES["mixed_batch"]]
    batch = encoder.encode(pairs)
    singles = torch.cat([encoder.encode([pair]) for pair in pairs])
    assert max_difference(batch, singles) <= TOLERANCE


def test_instruction_changes_the_vector(encoder_and_reference: tuple[InstructorEncoder, ReferenceInstructor]) -> None:
    encoder, _ = encoder_and_reference
    science, wiki = encoder.encode([tuple(pair) for pair in PARITY_CASES["one_text_two_instructions"]])
    assert float((science - wiki).abs().max()) > 1e-3


def test_vectors_are_unit_length(encoder_and_reference: tuple[InstructorEncoder, ReferenceInstructor]) -> None:
    encoder, _ = encoder_and_reference
    norms = encoder.encode([tuple(pair) for pair in PARITY_CASES["mixed_batch"]]).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_mixed_instructions_share_one_forward_pass(tiny_encoder: InstructorEncoder) -> None:
    """Different instructions never force separate passes (the padding bound is lifted here)."""
    pairs = [tuple(pair) for pair in PARITY_CASES["mixed_batch"]]
    calls: list[int] = []
    hook = tiny_encoder.engine.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    settings = tiny_encoder.settings
    tiny_encoder.settings = dataclasses.replace(settings, micro_batch_padding_pct=100)
    try:
        tiny_encoder.encode(pairs)
    finally:
        hook.remove()
        tiny_encoder.settings = settings
    assert len({instruction for instruction, _ in pairs}) > 2
    assert len(calls) == 1


def test_lower_casing_model_matches_reference(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``do_lower_case`` in sentence_bert_config.json: the reference lower-cases the text and the instruction."""
    model = tmp_path / "lower"
    shutil.copytree(tiny_model_dir, model)
    config_path = model / "sentence_bert_config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"do_lower_case": True}))
    pairs = [list(pair) for name in ("mixed_batch", "one_text_two_instructions") for pair in PARITY_CASES[name]]
    assert any(text != text.lower() for pair in pairs for text in pair)
    encoder, reference = InstructorEncoder.from_folder(model, EXCLUDE), ReferenceInstructor(model)
    expected = reference.encode(pairs)
    assert max_difference(encoder.encode([tuple(pair) for pair in pairs]), expected) <= TOLERANCE
    assert max_difference(ReferenceInstructor(tiny_model_dir).encode(pairs), expected) > 1e-3, "case must matter"


@pytest.fixture(scope="module")
def tanh_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with its Dense layer's activation switched from identity to Tanh."""
    target = tmp_path_factory.mktemp("models") / "tiny-tanh"
    shutil.copytree(tiny_model_dir, target)
    config_path = target / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config["activation_function"] = "torch.nn.modules.activation.Tanh"
    config_path.write_text(json.dumps(config))
    return target


SHORT_MAX_LENGTH = 24


@pytest.mark.parametrize("case", ["mixed_batch", "over_512_tokens", "surrounding_whitespace"])
def test_dense_activation_and_max_length_match_the_reference(
    case: str, tanh_model_dir: Path, tiny_encoder: InstructorEncoder
) -> None:
    """A non-identity Dense activation and a max_length other than 512, cross-checked with the reference code."""
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "max_length": SHORT_MAX_LENGTH})
    encoder = InstructorEncoder.from_folder(tanh_model_dir, settings)
    reference = ReferenceInstructor(tanh_model_dir, max_seq_length=SHORT_MAX_LENGTH)
    pairs = PARITY_CASES[case]
    actual = encoder.encode([tuple(pair) for pair in pairs])
    assert max_difference(actual, reference.encode(pairs)) <= TOLERANCE
    # The variant really differs from the tiny model at 512 tokens, so the check above means something.
    assert max_difference(actual, tiny_encoder.encode([tuple(pair) for pair in pairs])) > 1e-3


def test_rounding_widths_to_a_multiple_leaves_the_vectors_unchanged(tiny_encoder: InstructorEncoder) -> None:
    """Extra masked positions (``micro_batch_length_multiple``) change no vector beyond float noise."""
    pairs = [tuple(pair) for name in ("mixed_batch", "one_text_two_instructions") for pair in PARITY_CASES[name]]
    settings = tiny_encoder.settings
    try:
        tiny_encoder.settings = dataclasses.replace(settings, micro_batch_length_multiple=1)
        exact, exact_report = tiny_encoder.encode_rows_reported(tiny_encoder.tokenize(pairs))
        tiny_encoder.settings = dataclasses.replace(settings, micro_batch_length_multiple=64)
        rounded, rounded_report = tiny_encoder.encode_rows_reported(tiny_encoder.tokenize(pairs))
    finally:
        tiny_encoder.settings = settings
    assert float((rounded - exact).abs().max()) <= 1e-6
    assert rounded_report.padding_tokens > exact_report.padding_tokens  # the extra positions are counted
