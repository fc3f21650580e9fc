"""Errors of ``make eval``; each message says what to fix. The CLI prints it and exits 1."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ToolkitError


class EvaluationError(ToolkitError):
    """Base class: the evaluation cannot go on."""


class DataError(EvaluationError):
    """A BEIR-format file is missing or wrong; names the file and, where there is one, the line."""

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class DownloadError(EvaluationError):
    """The BEIR archive could not be fetched or unpacked."""


class ServedModelError(EvaluationError):
    """The served model cannot be described or does not answer as expected."""
