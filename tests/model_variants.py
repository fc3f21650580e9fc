"""Model folders built offline from the real all-MiniLM-L6-v2: the same weights, another pooling."""

from __future__ import annotations

import json
from pathlib import Path

from handler.pooling import PoolingMode
from toolkit.build.archive import stage_model


def with_pooling(model_dir: Path, target: Path, mode: PoolingMode) -> Path:
    """A copy of ``model_dir`` (weights hard-linked) whose ``1_Pooling/config.json`` enables only ``mode``."""
    stage_model(model_dir, target)
    config_path = target / "1_Pooling" / "config.json"
    config_path.unlink()  # a hard link to the source: never write through it
    config = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    config |= {name.value: name is mode for name in PoolingMode}
    config_path.write_text(json.dumps(config, indent=2))
    return target
