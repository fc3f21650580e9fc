"""Which pooling a model uses, read from its own ``1_Pooling/config.json``, and every pooler.

sentence-transformers writes one ``pooling_mode_*`` flag per mode into the Pooling folder's
``config.json``. The mode is read from there, never guessed from the model's name:
INSTRUCTOR, all-MiniLM-L6-v2 and GTE pool the mean, BGE pools the CLS token. Exactly one
supported flag must be on; anything else is refused at load with the file named.

The mean skips each row's instruction (INSTRUCTOR's per-row mask, ``context_len`` from
``handler.encoder``); CLS and max have no instruction mask, so they run only with
``instruction_mode`` ``include`` or ``ignore``. :func:`pool` picks the model's own.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

import torch

from handler.errors import ModelConfigError
from handler.settings import InstructionMode


class PoolingMode(enum.StrEnum):
    """A supported pooling, named by its sentence-transformers config flag."""

    MEAN = "pooling_mode_mean_tokens"
    CLS = "pooling_mode_cls_token"
    MAX = "pooling_mode_max_tokens"


def read_pooling_mode(config_path: Path) -> PoolingMode:
    """The one pooling mode a Pooling ``config.json`` enables.

    Raises:
        ModelConfigError: the file is missing or unreadable, or it enables no, several or an
            unsupported mode (mean of square-root length, weighted mean, last token, ...).
    """
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelConfigError(f"{config_path} is missing") from None
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{config_path} is not valid JSON: {err}") from None
    enabled = sorted(key for key, value in config.items() if key.startswith("pooling_mode") and value)
    supported = [mode.value for mode in PoolingMode]
    if len(enabled) != 1 or enabled[0] not in supported:
        raise ModelConfigError(f"{config_path} enables {enabled}; exactly one of {supported} is supported")
    return PoolingMode(enabled[0])


def check_instruction_mode(pooling: PoolingMode, instruction_mode: InstructionMode) -> None:
    """INSTRUCTOR's ``exclude`` masks instruction tokens out of a mean; no other pooling can do that.

    Raises:
        ModelConfigError: ``exclude`` with CLS or max pooling.
    """
    if instruction_mode is InstructionMode.EXCLUDE and pooling is not PoolingMode.MEAN:
        raise ModelConfigError(
            f"instruction_mode 'exclude' needs mean pooling; this model pools with {pooling.value}. "
            "Use instruction_mode 'include' (prefixes such as BGE's query instruction are pooled) or 'ignore'."
        )


def cls_pool(token_embeddings: torch.Tensor) -> torch.Tensor:
    """The first position of each row (rows are right-padded, so that is the CLS token)."""
    return token_embeddings[:, 0]


def masked_max_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-dimension maximum over each row's attended positions (padding never wins)."""
    padding = (attention_mask == 0).unsqueeze(-1)
    return token_embeddings.masked_fill(padding, torch.finfo(token_embeddings.dtype).min).amax(dim=1)


def masked_mean_pool(
    token_embeddings: torch.Tensor, attention_mask: torch.Tensor, context_lens: torch.Tensor
) -> torch.Tensor:
    """Mean over the attended positions of each row, skipping its first ``context_len`` ones."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    mask = attention_mask * (positions[None, :] >= context_lens[:, None])
    mask = mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def pool(
    mode: PoolingMode, hidden: torch.Tensor, attention_mask: torch.Tensor, context_lens: torch.Tensor
) -> torch.Tensor:
    """The model's own pooling (``1_Pooling/config.json``); only the mean skips instructions."""
    if mode is PoolingMode.CLS:
        return cls_pool(hidden)
    if mode is PoolingMode.MAX:
        return masked_max_pool(hidden, attention_mask)
    return masked_mean_pool(hidden, attention_mask, context_lens)
