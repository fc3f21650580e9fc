"""The build-time fidelity figures an archive carries (written by :mod:`toolkit.fidelity_gate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from handler.errors import ModelConfigError

# In the archive root, beside model-config.yaml's handler section.
FIDELITY_FILE = "fidelity.json"


def read_fidelity(archive_dir: Path) -> dict[str, Any] | None:
    """The archive's fidelity figures, or None for an archive built without a gate (fp32).

    Raises:
        ModelConfigError: the file exists but is not valid JSON.
    """
    path = archive_dir / FIDELITY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path} is not valid JSON: {err}") from None
