"""Typed client errors; each carries the HTTP status (0: no answer) and the server's message."""

from __future__ import annotations


class InstructorError(Exception):
    """Base class: the request failed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class InvalidRequestError(InstructorError):
    """The server refused the input (400, 413, 415): fix the request, do not retry."""


class AuthorizationError(InstructorError):
    """The token was refused: pass the inference key (``key_file.json``)."""


class ServerUnavailableError(InstructorError):
    """No usable answer after the retries (5xx, 503/507 overload, or no connection)."""


class TokenBudgetExceededError(InvalidRequestError):
    """413: the request holds more tokens than one batch may compute; ``max_pairs`` of its pairs would fit.

    :meth:`InstructorClient.embed` splits such a request by ``max_pairs`` and resends the pieces.
    """

    def __init__(self, status: int, message: str, max_pairs: int) -> None:
        super().__init__(status, message)
        self.max_pairs = max_pairs
