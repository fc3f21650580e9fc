"""The errors a toolkit command reports as one line (``error: ...``, exit 1) instead of a traceback."""

from __future__ import annotations

from handler.errors import ExportError, ModelConfigError


class ToolkitError(Exception):
    """Base of every toolkit error whose message tells the user what to do."""


class SettingError(ToolkitError, ValueError):
    """A setting's value (flag or environment variable) is not one it takes; the message names it."""


# What the commands (toolkit/cli.py, the image's entrypoint, make eval) print as one line: ours, and
# the handler's own errors the build can raise (a model folder it cannot serve, an export it refuses).
ONE_LINE_ERRORS: tuple[type[Exception], ...] = (ToolkitError, ModelConfigError, ExportError)
