"""The errors a toolkit command reports as one line (``error: ...``, exit 1) instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from handler.errors import ExportError, ModelConfigError


class ToolkitError(Exception):
    """Base of every toolkit error whose message tells the user what to do."""


class SettingError(ToolkitError, ValueError):
    """A setting's value (flag or environment variable) is not one it takes; the message names it."""


# What the commands (toolkit/cli.py, the image's entrypoint, make eval, KServe) print as one line: ours, and
# the handler's own errors the build can raise (a model folder it cannot serve, an export it refuses).
ONE_LINE_ERRORS: tuple[type[Exception], ...] = (ToolkitError, ModelConfigError, ExportError)


def reporting_errors(command: Callable[[], int], also: tuple[type[Exception], ...] = ()) -> int:
    """Run a command's body; an error the user can act on (:data:`ONE_LINE_ERRORS`, ``also``) is one line, exit 1."""
    try:
        return command()
    except (*ONE_LINE_ERRORS, *also) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
