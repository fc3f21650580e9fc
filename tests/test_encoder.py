"""The instruction mask and the model-folder checks, on hand-made tensors and folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from handler.encoder import InstructorEncoder, instruction_context_len
from handler.errors import ModelConfigError
from handler.model_files import load_dense, read_layout
from handler.pooling import masked_mean_pool
from handler.settings import HandlerSettings
from tests.conftest import EXCLUDE


@pytest.mark.parametrize(("tokens", "context"), [(1, 0), (2, 0), (3, 2), (12, 11)])
def test_context_length_rule(tokens: int, context: int) -> None:
    assert instruction_context_len(tokens) == context


def test_masked_mean_skips_each_rows_own_context_and_padding() -> None:
    embeddings = torch.tensor([[[1.0], [2.0], [3.0], [4.0]], [[10.0], [20.0], [30.0], [99.0]]])
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    pooled = masked_mean_pool(embeddings, attention, torch.tensor([0, 2]))
    assert pooled.tolist() == [[2.5], [30.0]]


def test_rows_carry_their_own_context(tiny_encoder: InstructorEncoder) -> None:
    rows = tiny_encoder.tokenize([("Represent the sentence:", "text"), ("", "text"), ("a", "text")])
    instruction_tokens = len(tiny_encoder.tokenizer("Represent the sentence:")["input_ids"])
    assert [row.context_len for row in rows] == [instruction_tokens - 1, 0, 0]


def test_text_is_truncated_to_max_length(tiny_encoder: InstructorEncoder) -> None:
    (row,) = tiny_encoder.tokenize([("", "word " * 2000)])
    assert len(row.input_ids) == 512


def test_ignore_and_include_modes(tiny_model_dir: Path) -> None:
    ignore, include = (
        InstructorEncoder.from_folder(tiny_model_dir, HandlerSettings.from_mapping({"instruction_mode": mode}))
        for mode in ("ignore", "include")
    )
    exclude = InstructorEncoder.from_folder(tiny_model_dir, EXCLUDE)
    pair, bare = ("Represent the sentence:", "some text"), ("", "some text")
    assert torch.equal(ignore.encode([pair]), ignore.encode([bare]))
    assert include.tokenize([pair])[0].context_len == 0
    assert not torch.allclose(include.encode([pair]), exclude.encode([pair]), atol=1e-4)


def test_exclude_mode_refuses_a_tokenizer_with_a_start_token(minilm_dir: Path) -> None:
    with pytest.raises(ModelConfigError, match="appends exactly one end token"):
        InstructorEncoder.from_folder(minilm_dir, EXCLUDE)


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_layout_of_the_tiny_model(tiny_model_dir: Path) -> None:
    layout = read_layout(tiny_model_dir)
    assert [path.name for path in layout.dense_dirs] == ["2_Dense"] and layout.normalize


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=re.escape("is not a model folder: config.json is missing")):
        read_layout(tmp_path)
    with pytest.raises(ModelConfigError, match="is not a folder"):
        read_layout(tmp_path / "absent")


def test_missing_modules_json(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "modules.json").unlink()
    with pytest.raises(ModelConfigError, match=re.escape("modules.json is missing")):
        read_layout(model)


def test_truncated_weights_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelConfigError, match=re.escape(f"{weights} is corrupt or incomplete")):
        read_layout(model)


@pytest.mark.parametrize(
    ("missing", "message"), [("model.safetensors", "no weights"), ("tokenizer.json", "no tokenizer")]
)
def test_incomplete_folder_is_refused(tmp_path: Path, tiny_model_dir: Path, missing: str, message: str) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / missing).unlink()
    with pytest.raises(ModelConfigError, match=f"is incomplete: {message}"):
        read_layout(model)


def test_unsupported_pooling_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    config_path = model / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text()) | {"pooling_mode_mean_sqrt_len_tokens": True}
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match=re.escape(f"{config_path} enables")):
        read_layout(model)


def test_unsupported_module_order_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    modules = json.loads((model / "modules.json").read_text())
    (model / "modules.json").write_text(json.dumps([modules[0], modules[1], modules[3], modules[2]]))
    with pytest.raises(ModelConfigError, match="unsupported module order"):
        read_layout(model)


def test_dense_formats_agree_and_bad_activation_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    from_safetensors = load_dense(model / "2_Dense")
    (model / "2_Dense" / "model.safetensors").unlink()
    from_bin = load_dense(model / "2_Dense")
    assert torch.equal(from_safetensors[0].weight, from_bin[0].weight)
    config_path = model / "2_Dense" / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"activation_function": "os.system"}))
    with pytest.raises(ModelConfigError, match=re.escape("activation 'os.system' is not supported")):
        load_dense(model / "2_Dense")


def _set_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _truncated_bin_weights(model: Path) -> None:
    """The transformer's weights as a ``pytorch_model.bin`` cut off half way (an interrupted download)."""
    state = load_file(str(model / "model.safetensors"))
    (model / "model.safetensors").unlink()
    torch.save(state, model / "pytorch_model.bin")
    data = (model / "pytorch_model.bin").read_bytes()
    (model / "pytorch_model.bin").write_bytes(data[: len(data) // 2])


# Folders that read_layout accepts but that transformers cannot load, and the exception each raises inside.
UNLOADABLE = {
    "unknown model type (ValueError)": lambda model: _set_json(model / "config.json", model_type="no-such-model"),
    "config.json not JSON (OSError)": lambda model: (model / "config.json").write_text("{not json"),
    "weights do not fit config.json (RuntimeError)": lambda model: _set_json(model / "config.json", d_model=16),
    "truncated pytorch_model.bin (RuntimeError)": _truncated_bin_weights,
    "git-lfs pointer as pytorch_model.bin (UnpicklingError)": lambda model: (
        (model / "model.safetensors").unlink(),
        (model / "pytorch_model.bin").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n"),
    ),
    "tokenizer.json of another shape (KeyError)": lambda model: (model / "tokenizer.json").write_text('{"a": 1}'),
}


@pytest.mark.parametrize("damage", sorted(UNLOADABLE))
def test_unloadable_transformer_is_a_model_config_error(tmp_path: Path, tiny_model_dir: Path, damage: str) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    UNLOADABLE[damage](model)
    read_layout(model)  # the folder passes the cheap checks; loading is what fails
    part = "tokenizer" if damage.startswith("tokenizer") else "transformer"
    with pytest.raises(ModelConfigError, match=re.escape(f"{model}: cannot load the {part}: ")):
        InstructorEncoder.from_folder(model, EXCLUDE)


def test_lower_casing_models_lower_case_instruction_and_text(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = copy_model(tiny_model_dir, tmp_path / "m")
    _set_json(model / "sentence_bert_config.json", do_lower_case=True)
    lower = InstructorEncoder.from_folder(model, EXCLUDE)
    assert lower.do_lower_case
    mixed, lowered = (
        ("Represent the Science title:", "Parton Energy LOSS"),
        ("represent the science title:", "parton energy loss"),
    )
    assert lower.tokenize([mixed]) == lower.tokenize([lowered])
    cased = InstructorEncoder.from_folder(tiny_model_dir, EXCLUDE)
    assert not cased.do_lower_case
    assert cased.tokenize([mixed]) != cased.tokenize([lowered]), "the tokenizer must tell the cases apart"
    assert torch.equal(lower.encode([mixed]), cased.encode([lowered]))
