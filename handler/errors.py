"""Typed errors and the one table that maps them to HTTP answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ServingError(Exception):
    """An error that reaches a client. Maps to HTTP 500 unless a subclass says otherwise."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client: status code, error type and message."""
        return {"code": int(self.status), "type": type(self).__name__, "message": self.message}


class InvalidInputError(ServingError):
    """The request body is malformed. Maps to HTTP 400; the message names the field."""

    status = HTTPStatus.BAD_REQUEST


class UnsupportedMediaTypeError(ServingError):
    """The body arrived form-encoded, which mangles JSON (``+``, ``%``). Maps to HTTP 415."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class TooManyInputsError(ServingError):
    """More pairs in one request than the configured limit. Maps to HTTP 413."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class InputTooLongError(ServingError):
    """A pair longer than ``max_length`` tokens in a request that asked not to truncate. Maps to HTTP 413.

    The body names the pair (``field``, ``index``), its token count and the limit.
    """

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, field: str, index: int, tokens: int, max_length: int) -> None:
        super().__init__(
            f"{field} has {tokens} tokens, more than the limit of {max_length} (max_length) and "
            f"truncation is off: shorten it, or allow truncation (truncate: true, the default) to "
            f"embed its first {max_length} tokens"
        )
        self.index = index
        self.tokens = tokens
        self.max_length = max_length

    def body(self) -> dict[str, Any]:
        return super().body() | {"index": self.index, "tokens": self.tokens, "max_length": self.max_length}


class TokenBudgetError(ServingError):
    """A request with more tokens than one batch may compute within ``responseTimeout``. Maps to HTTP 413.

    The body names the request's tokens, the budget and how many of its pairs would fit.
    """

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE

    def __init__(self, tokens: int, budget: int, pairs_that_fit: int) -> None:
        super().__init__(
            f"the request holds {tokens} tokens, more than this worker's budget of {budget} tokens per batch "
            f"(what it computes within the server's responseTimeout): split it into requests of at most "
            f"{max(1, pairs_that_fit)} pairs of this length"
        )
        self.tokens = tokens
        self.budget = budget
        self.pairs_that_fit = max(1, pairs_that_fit)

    def body(self) -> dict[str, Any]:
        return super().body() | {"tokens": self.tokens, "budget_tokens": self.budget, "max_pairs": self.pairs_that_fit}


class BatchFullError(ServingError):
    """The request fits the token budget alone but not beside the batch's earlier requests. Maps to HTTP 503.

    Retrying is right: the next batch has room (the project's client backs off and retries 503).
    """

    status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, tokens: int, room: int) -> None:
        super().__init__(
            f"this batch has room for {max(0, room)} more tokens and the request holds {tokens}: retry shortly"
        )


class InternalError(ServingError):
    """The model failed on valid input. Maps to HTTP 500; the details go to the log only."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR


class OutOfMemoryError(ServingError):
    """The worker ran out of memory for this batch. Maps to HTTP 507, as TorchServe does."""

    status = HTTPStatus.INSUFFICIENT_STORAGE


class ModelConfigError(Exception):
    """The archive's configuration or model folder is unusable. Raised at load, never per request."""


class EngineError(Exception):
    """An engine's own failure, typed so callers never parse a runtime library's messages."""


class EngineOutOfMemory(EngineError):  # noqa: N818 (named after the condition, like MemoryError)
    """An engine could not allocate memory for a forward pass; each engine maps its library's own failure."""


class EngineStartError(EngineError, ModelConfigError):
    """An engine cannot start for this model folder or device (its export missing, a device it does not run on)."""


class EngineInputError(EngineError):
    """A batch an engine cannot compute (ids and mask of different shapes, not integers): a caller's bug."""


class ExportError(Exception):
    """A build-time export could not keep a promise it makes (a layer chosen to stay in float is not in the graph)."""
