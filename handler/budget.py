"""The token budget: no request or batch may take longer than TorchServe's ``responseTimeout``.

TorchServe kills a worker whose batch runs past ``responseTimeout``, and every request of that
batch fails with it. So each worker measures its own speed at start (:func:`measure_rate`: one
full-length row, the slowest tokens there are) and admits per batch at most
``rate x responseTimeout x BUDGET_SHARE`` tokens (:func:`admit`). A request over that alone is
answered 413, naming its tokens and the budget (split it); a request that would overfill a batch
others already fill is answered 503 (retry: the next batch has room). Both are decided after
tokenizing (cheap), before any forward pass. The builder sizes ``responseTimeout`` from the same
rate (:func:`response_timeout_for`), so a maximal request fits where the build machine's speed holds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

from handler.errors import BatchFullError, TokenBudgetError

# The share of responseTimeout a batch may plan to use: headroom for a busier moment than the
# measurement's, for padding, and for attention's growth past the measured length.
BUDGET_SHARE = 0.5
# The measured row's length: max_length, at most this (a very long max_length would make the
# measurement itself the slowest thing a worker ever does).
MEASURED_TOKENS = 512
# Bounds of a responseTimeout the builder derives (seconds).
MIN_RESPONSE_TIMEOUT_S = 120
MAX_RESPONSE_TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class TokenBudget:
    """Tokens one batch may hold, and the figures it comes from."""

    tokens_per_batch: int
    tokens_per_s: float
    response_timeout_s: float

    @classmethod
    def of(cls, tokens_per_s: float, response_timeout_s: float) -> TokenBudget:
        return cls(max(1, int(tokens_per_s * response_timeout_s * BUDGET_SHARE)), tokens_per_s, response_timeout_s)

    def describe(self) -> dict[str, Any]:
        return {
            "tokens_per_batch": self.tokens_per_batch,
            "measured_tokens_per_s": round(self.tokens_per_s, 1),
            "response_timeout_s": self.response_timeout_s,
            "share": BUDGET_SHARE,
        }


def measure_rate(encoder: Any, rounds: int = 2) -> float:
    """Tokens per second of ``encoder`` (an :class:`~handler.encoder.InstructorEncoder`) on one
    ``max_length``-token row (at most :data:`MEASURED_TOKENS`): the best of ``rounds`` (the first
    may pay a new shape's set-up)."""
    (row,) = encoder.tokenize([("", "measure " * min(encoder.settings.max_length, MEASURED_TOKENS))])
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.encode_rows([row])
        best = min(best, time.perf_counter() - started)
    return len(row.input_ids) / max(best, 1e-9)


def response_timeout_for(tokens_per_s: float, request_tokens: int) -> int:
    """The responseTimeout (s) under which a request of ``request_tokens`` fits the budget, within bounds."""
    needed = math.ceil(request_tokens / (tokens_per_s * BUDGET_SHARE))
    return max(MIN_RESPONSE_TIMEOUT_S, min(MAX_RESPONSE_TIMEOUT_S, needed))


def admit(
    token_counts: Sequence[int | None], budget: TokenBudget, max_pairs: Sequence[int]
) -> dict[int, TokenBudgetError | BatchFullError]:
    """Which requests of a batch the budget refuses, by index; ``None`` counts mark requests already refused.

    Requests are admitted in batch order while the batch's tokens stay within the budget.
    ``max_pairs[i]`` is how many of request ``i``'s longest pairs would fit (for the 413's advice).
    """
    refused: dict[int, TokenBudgetError | BatchFullError] = {}
    used = 0
    for index, tokens in enumerate(token_counts):
        if tokens is None:
            continue
        if tokens > budget.tokens_per_batch:
            refused[index] = TokenBudgetError(tokens, budget.tokens_per_batch, max_pairs[index])
        elif used + tokens > budget.tokens_per_batch:
            refused[index] = BatchFullError(tokens, budget.tokens_per_batch - used)
        else:
            used += tokens
    return refused
