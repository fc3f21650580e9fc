"""Build the baseline archive: the upstream-style handler, the model, and batch_size 1."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from toolkit import REPO_ROOT
from toolkit.build.archive import run_archiver
from toolkit.build.staging import stage_model

REFERENCE_FILE = REPO_ROOT / "toolkit" / "models" / "reference.py"
HANDLER_FILE = Path(__file__).resolve().parent / "baseline_handler.py"


def build_baseline_archive(
    model_dir: Path, export_dir: Path, instruction_mode: str, archive_format: str = "no-archive", name: str = "baseline"
) -> Path:
    """An archive serving ``model_dir`` through :class:`UpstreamStyleHandler` (fp32, batch_size 1)."""
    export_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="baseline-staging-", dir=export_dir) as staging_name:
        extra = Path(staging_name) / "extra"
        stage_model(model_dir, extra / "model")
        # The handler imports toolkit.models.reference (INSTRUCTOR's own code) from the archive.
        (extra / "toolkit" / "models").mkdir(parents=True)
        (extra / "toolkit" / "__init__.py").write_text("")
        (extra / "toolkit" / "models" / "__init__.py").write_text("")
        shutil.copy2(REFERENCE_FILE, extra / "toolkit" / "models" / "reference.py")
        config = {
            "minWorkers": 1,
            "maxWorkers": 1,
            "batchSize": 1,
            "maxBatchDelay": 1,
            "responseTimeout": 900,
            "startupTimeout": 600,
            "baseline": {"instruction_mode": instruction_mode},
        }
        config_file = Path(staging_name) / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        return run_archiver(name, "1.0", HANDLER_FILE, extra, config_file, export_dir, archive_format)
