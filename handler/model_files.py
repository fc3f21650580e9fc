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
