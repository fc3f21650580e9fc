"""Read a sentence-transformers model folder: which modules run after the transformer.

The hub layout (hkunlp/instructor-*, sentence-transformers/*) is a ``modules.json`` listing a
Transformer (the folder root), a Pooling folder (its mode read by ``handler.pooling``), optional
Dense folders and an optional Normalize. Anything else is refused at load with a message naming
the file and the problem, so a capability is never dropped silently.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from handler.errors import ModelConfigError
from handler.pooling import PoolingMode, read_pooling_mode

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "vocab.txt")

# INSTRUCTOR's own truncation (hard-coded in InstructorEmbedding), for folders that name no max_seq_length.
DEFAULT_MAX_LENGTH = 512
# Model types whose position ids start after the padding index (padding_idx + 1), so their
# usable positions are ``max_position_embeddings - pad_token_id - 1`` (514 -> 512).
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "mpnet", "camembert", "longformer"})

SUPPORTED_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "torch.nn.modules.linear.Identity": torch.nn.Identity,
    "torch.nn.modules.activation.Tanh": torch.nn.Tanh,
}


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """What a model folder declares about its module pipeline."""

    root: Path
    dense_dirs: tuple[Path, ...]
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    pooling: PoolingMode = PoolingMode.MEAN


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelConfigError(f"{path} is missing") from None
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path} is not valid JSON: {err}") from None


def _short_type(module: dict[str, Any]) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _check_files(root: Path, require_weights: bool = True) -> None:
    """Weights (unless another engine carries them) and a tokenizer are present, safetensors complete.

    Reading a safetensors header is cheap and catches a truncated copy or download before
    TorchServe starts a worker on it.
    """
    if require_weights and not any((root / name).is_file() for name in WEIGHT_FILES):
        raise ModelConfigError(f"{root} is incomplete: no weights ({', '.join(WEIGHT_FILES)})")
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        raise ModelConfigError(f"{root} is incomplete: no tokenizer ({', '.join(TOKENIZER_FILES)})")
    for path in sorted(root.rglob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ModelConfigError(f"{path} is corrupt or incomplete: {err}") from None


def read_layout(root: str | Path, require_weights: bool = True) -> ModelLayout:
    """Read and check a model folder's ``modules.json`` and its module folders.

    ``require_weights=False`` accepts a folder without the transformer's torch weights (an
    archive whose engine carries its own exported copy).

    Raises:
        ModelConfigError: the folder is not a supported sentence-transformers model.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelConfigError(f"{root} is not a folder")
    if not (root / "config.json").is_file():
        raise ModelConfigError(f"{root} is not a model folder: config.json is missing")
    _check_files(root, require_weights)
    modules = _read_json(root / "modules.json")
    kinds = [_short_type(module) for module in modules]
    if len(kinds) < 2 or kinds[0] not in ("Transformer", "INSTRUCTOR_Transformer"):
        raise ModelConfigError(f"{root / 'modules.json'} must start with Transformer, Pooling; got {kinds}")
    if kinds[1] not in ("Pooling", "INSTRUCTOR_Pooling"):
        raise ModelConfigError(f"{root / 'modules.json'} must have Pooling second; got {kinds}")
    pooling = read_pooling_mode(root / modules[1]["path"] / "config.json")
    dense_dirs: list[Path] = []
    normalize = False
    for module, kind in zip(modules[2:], kinds[2:], strict=True):
        if kind == "Dense" and not normalize:
            dense_dirs.append(root / module["path"])
        elif kind == "Normalize" and not normalize:
            normalize = True
        else:
            raise ModelConfigError(
                f"{root / 'modules.json'}: unsupported module order {kinds}; expected "
                "Transformer, Pooling, Dense (any number), Normalize (optional, last)"
            )
    st_config_path = root / "sentence_bert_config.json"
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    return ModelLayout(
        root=root,
        dense_dirs=tuple(dense_dirs),
        normalize=normalize,
        max_seq_length=st_config.get("max_seq_length"),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pooling=pooling,
    )


def position_limit(root: Path) -> int | None:
    """The most tokens the transformer's position embeddings allow, or None (T5: relative positions).

    An unreadable ``config.json`` also gives None: loading the transformer reports it.
    """
    try:
        config = _read_json(root / "config.json")
    except ModelConfigError:
        return None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(positions, int):
        return None
    if config.get("model_type") in OFFSET_POSITION_TYPES:
        return positions - int(config.get("pad_token_id", 1)) - 1
    return positions


def max_length_for(configured: int | None, layout: ModelLayout) -> int:
    """The tokens per input a model is served with: ``configured``, else the model's own ``max_seq_length``.

    A folder that names no ``max_seq_length`` gets INSTRUCTOR's 512, capped at what its position
    embeddings allow.

    Raises:
        ModelConfigError: ``configured`` exceeds what the model's position embeddings allow.
    """
    limit = position_limit(layout.root)
    if configured is None:
        own = layout.max_seq_length or DEFAULT_MAX_LENGTH
        return own if limit is None else min(own, limit)
    if limit is not None and configured > limit:
        raise ModelConfigError(
            f"max_length {configured} exceeds what {layout.root / 'config.json'} allows: its position embeddings "
            f"hold {limit} tokens (the model's own max_seq_length is {layout.max_seq_length}); "
            f"set max_length to {limit} or less, or leave it unset for the model's own"
        )
    return configured


def load_dense(dense_dir: Path) -> torch.nn.Sequential:
    """Load a sentence-transformers Dense folder as ``Sequential(Linear, activation)``.

    Reads ``model.safetensors`` when present, else ``pytorch_model.bin`` with
    ``weights_only=True`` (no pickled code is ever executed).
    """
    config = _read_json(dense_dir / "config.json")
    activation_name = config.get("activation_function", "torch.nn.modules.linear.Identity")
    if activation_name not in SUPPORTED_ACTIVATIONS:
        raise ModelConfigError(
            f"{dense_dir / 'config.json'}: activation {activation_name!r} is not supported; "
            f"supported: {sorted(SUPPORTED_ACTIVATIONS)}"
        )
    try:
        linear = torch.nn.Linear(config["in_features"], config["out_features"], bias=config.get("bias", True))
    except KeyError as err:
        raise ModelConfigError(f"{dense_dir / 'config.json'} lacks {err.args[0]!r}") from None
    if (dense_dir / "model.safetensors").is_file():
        state = load_file(str(dense_dir / "model.safetensors"))
    elif (dense_dir / "pytorch_model.bin").is_file():
        state = torch.load(dense_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ModelConfigError(f"{dense_dir} holds neither model.safetensors nor pytorch_model.bin")
    prefixed = {key.removeprefix("linear."): value for key, value in state.items()}
    try:
        linear.load_state_dict(prefixed)
    except RuntimeError as err:
        raise ModelConfigError(f"{dense_dir}: weights do not match config.json: {err}") from None
    return torch.nn.Sequential(linear, SUPPORTED_ACTIVATIONS[activation_name]())
