"""The image copies exactly the server's code: what its entrypoint, healthcheck and operator scripts import.

No container engine needed: the Dockerfile's ``COPY`` sources are read as text and compared with the
import closure of the scripts it copies (each script's toolkit command followed to its module).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

from toolkit.commands import BY_NAME

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
FIRST_PARTY = ("handler", "toolkit")


def stage_copies(dockerfile: str, stage: str) -> list[str]:
    """The local sources of the ``COPY`` lines of one stage (``--from`` copies left out)."""
    text = dockerfile.replace("\\\n", " ")
    body = re.split(r"^FROM .*$", text, flags=re.M)
    names = re.findall(r"^FROM .*? AS (\w+)$", text, flags=re.M)
    lines = body[1 + names.index(stage)].splitlines()
    sources: list[str] = []
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            words = [word for word in shlex.split(line)[1:] if not word.startswith("--")]
            sources += words[:-1]
    return sources


def copied_python_files(sources: list[str]) -> set[Path]:
    """Every .py file the sources bring in (folders expanded, caches ignored)."""
    files: set[Path] = set()
    for source in sources:
        path = REPO / source
        if path.is_dir():
            files |= {file for file in path.rglob("*.py") if "__pycache__" not in file.parts}
        elif path.suffix == ".py":
            files.add(path)
    return files


def module_file(name: str) -> Path | None:
    """The repository file of a dotted module name, or None (third party, or a name inside a module)."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(path: Path) -> set[Path]:
    """First-party files ``path`` imports, its packages' ``__init__`` and a thin script's command module."""
    found: set[Path] = set()
    rel = path.relative_to(REPO)
    for depth in range(1, len(rel.parts)):
        init = REPO.joinpath(*rel.parts[:depth], "__init__.py")
        if init.is_file():
            found.add(init)
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "run_command"
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [BY_NAME[node.args[0].value].target.split(":")[0]]
        for name in names:
            if name == "_bootstrap":
                found.add(REPO / "scripts" / "_bootstrap.py")
            elif name.split(".")[0] in FIRST_PARTY and (file := module_file(name)):
                found.add(file)
    return found


def import_closure(starts: set[Path]) -> set[Path]:
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += imported_files(path)
    return seen


def image_scripts(dockerfile: str) -> set[Path]:
    """The image's starting points: the scripts it copies, and ``python -m toolkit``."""
    copied = copied_python_files(stage_copies(dockerfile, "model"))
    return {file for file in copied if file.parent.name == "scripts"} | {REPO / "toolkit" / "__main__.py"}


def test_the_image_copies_what_its_scripts_import_and_nothing_else() -> None:
    dockerfile = DOCKERFILE.read_text()
    copied = copied_python_files(stage_copies(dockerfile, "model"))
    # handler/ goes whole into every archive the image builds, imported or not.
    needed = import_closure(image_scripts(dockerfile)) | set((REPO / "handler").rglob("*.py"))
    needed = {file for file in needed if "__pycache__" not in file.parts}
    missing = sorted(str(file.relative_to(REPO)) for file in needed - copied)
    extra = sorted(str(file.relative_to(REPO)) for file in copied - needed)
    assert not missing, f"the image lacks modules its scripts import: {missing}"
    assert not extra, f"the image copies modules the server never imports: {extra}"


def test_the_entrypoint_and_healthcheck_are_in_the_image() -> None:
    dockerfile = DOCKERFILE.read_text()
    scripts = {file.name for file in image_scripts(dockerfile)}
    entrypoint = re.search(r'^ENTRYPOINT \[.*"scripts/(\w+\.py)"\]', dockerfile, flags=re.M)
    healthcheck = re.search(r'CMD \["python", "scripts/(\w+\.py)"\]', dockerfile)
    assert entrypoint and healthcheck
    assert {entrypoint.group(1), healthcheck.group(1)} <= scripts
    assert "config.properties" in stage_copies(dockerfile, "model")


def test_the_runtime_stage_takes_the_code_from_the_model_stage_only() -> None:
    assert stage_copies(DOCKERFILE.read_text(), "runtime") == [], "copy the server's code once, in the model stage"


def test_a_missing_module_is_found(tmp_path: Path) -> None:
    # The check can fail: a Dockerfile without toolkit/serve/ misses what the entrypoint imports.
    dockerfile = re.sub(r"^COPY toolkit/serve/.*$", "", DOCKERFILE.read_text(), flags=re.M)
    copied = copied_python_files(stage_copies(dockerfile, "model"))
    assert REPO / "toolkit" / "serve" / "server.py" in import_closure(image_scripts(dockerfile)) - copied


def test_an_unneeded_module_is_found() -> None:
    # ... and it can fail the other way: copying the bench tooling is reported.
    dockerfile = DOCKERFILE.read_text().replace(
        "COPY toolkit/build/", "COPY toolkit/bench/ toolkit/bench/\nCOPY toolkit/build/"
    )
    copied = copied_python_files(stage_copies(dockerfile, "model"))
    assert REPO / "toolkit" / "bench" / "runner.py" in copied - import_closure(image_scripts(dockerfile))
