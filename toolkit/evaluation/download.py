"""``--download TASK``: fetch a public BEIR archive and unpack it into ``data/TASK``.

The zip is streamed to a ``.part`` file, checked, unpacked into a scratch folder (refusing
members that would land outside it) and moved into place only when it holds a BEIR layout,
so an interrupted download never leaves a folder that looks complete.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import requests

from toolkit.evaluation.errors import DownloadError
from toolkit.evaluation.tasks import TASKS

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
CHUNK_BYTES = 1 << 20


def task_url(task: str, base_url: str = BEIR_BASE_URL) -> str:
    """Where BEIR publishes ``task``'s zip."""
    return f"{base_url.rstrip('/')}/{task}.zip"


def _fetch(url: str, target: Path, timeout_s: float, data_dir: Path) -> None:
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            if response.status_code != 200:
                raise DownloadError(f"{url} answered HTTP {response.status_code}")
            with target.open("wb") as file:
                for chunk in response.iter_content(CHUNK_BYTES):
                    file.write(chunk)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise DownloadError(
            f"cannot reach {url} ({type(err).__name__}): this machine looks offline or the host is blocked. "
            f"Fetch that file on a machine that can, unzip it into {data_dir}, and pass the unzipped folder as DATA."
        ) from None


def _unpack(archive: Path, scratch: Path) -> Path:
    """Unpack safely; returns the folder inside that holds ``corpus.jsonl``."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                if not (scratch / member).resolve().is_relative_to(scratch.resolve()):
                    raise DownloadError(f"{archive.name}: member {member!r} would unpack outside the data folder")
            bundle.extractall(scratch)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"the download is not a valid zip ({err}): try again") from None
    found = sorted(path.parent for path in scratch.rglob("corpus.jsonl"))
    if not found:
        raise DownloadError(f"{archive.name} holds no corpus.jsonl: not a BEIR archive")
    return found[0]


def download_task(task: str, data_dir: Path, base_url: str = BEIR_BASE_URL, timeout_s: float = 60.0) -> Path:
    """``data_dir/TASK`` with the BEIR archive unpacked (kept as is when already there).

    Raises:
        DownloadError: unknown task, unreachable host, HTTP error, or a bad archive.
    """
    if task not in TASKS:
        raise DownloadError(f"unknown BEIR task {task!r}; known: {sorted(TASKS)}")
    destination = data_dir / task
    if (destination / "corpus.jsonl").is_file():
        return destination
    if destination.exists():
        raise DownloadError(f"{destination} exists but holds no corpus.jsonl: move it away and retry")
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{task}-", dir=data_dir) as scratch_name:
        scratch = Path(scratch_name)
        archive = scratch / f"{task}.zip.part"
        _fetch(task_url(task, base_url), archive, timeout_s, data_dir)
        unpacked = _unpack(archive, scratch / "unpacked")
        shutil.move(unpacked, destination)
    return destination
