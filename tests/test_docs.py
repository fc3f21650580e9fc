"""The documentation holds together: links resolve, the commands it shows exist, the README stays a front page.

Pure unit: reads README.md, CONTRIBUTING.md, docs/ and the Makefile; starts nothing. Each check's
parser is also run on a small broken sample, so a check that cannot fail is caught here too.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# Front pages of the projects this one is measured against are 14-28 KB, with reference pages beside them.
README_MAX_BYTES = 28_000
# Code spans naming a file of this repository (checked to exist; globs allowed).
REPO_DIRS = ("handler", "toolkit", "scripts", "deploy", "tests", "examples", "instructor_client", "docs")
# Where the architecture page's ``*.py`` names must be found.
CODE_DIRS = ("handler", "toolkit", "scripts", "instructor_client", "examples", "tests")

FENCE = re.compile(r"^\s*(```|~~~)")
# [text](target) or [text](target "title"); an image's ![alt](target) too.
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
MAKE_COMMAND = re.compile(r"(?:^|[\s;&|(`])make\s+((?:[A-Z_]+=\S+\s+)*)([a-z][\w-]*)")
SCRIPT_PATH = re.compile(r"(?:^|[\s\"'`(=])(scripts/[\w.-]+\.py)\b")
MAKE_TARGET = re.compile(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", re.MULTILINE)
REPO_PATH = re.compile(r"`((?:" + "|".join(REPO_DIRS) + r")/[^`\s]*)`")
PY_NAME = re.compile(r"`([\w/]+\.py)`")
# `name`, `Class.method` or `call(args)` in a code span; checked when a part has an underscore or is CamelCase.
IDENTIFIER = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\([^`]*\))?`")
CAMEL_CASE = re.compile(r"^[A-Z][a-z0-9]+[A-Z]\w*$")
FILE_SUFFIXES = {"py", "md", "json", "yaml", "properties", "mar", "txt"}
# Besides the code: the names the flows cite from the server's own configuration.
CONFIG_FILES = ("config.properties", "Makefile", "Dockerfile")


def doc_files() -> list[Path]:
    """Every page the link check covers: README.md, CONTRIBUTING.md, docs/**/*.md."""
    return [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose_pages() -> list[Path]:
    """The hand-written pages (not the generated results under docs/benchmarks/)."""
    return [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def split_fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line number, line) outside fenced code blocks, and inside them."""
    prose: list[tuple[int, str]] = []
    code: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(1) == fence):
            fence = match.group(1) if fence is None else None
            continue
        (prose if fence is None else code).append((number, line))
    return prose, code


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every markdown link outside fenced blocks and inline code."""
    for number, line in split_fences(text)[0]:
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, match.group(1)


def is_external(target: str) -> bool:
    """http(s):, mailto: and any other scheme."""
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) is not None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = unicodedata.normalize("NFC", text).lower().strip()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors a page's headings make (repeats get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in split_fences(text)[0]:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, folder or heading anchor does not exist."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for number, target in links(text):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:
            resolved = page
        elif path_part.startswith("/"):  # GitHub resolves a leading / from the repository root
            resolved = REPO / path_part.lstrip("/")
        else:
            resolved = (page.parent / path_part).resolve()
        where = f"{_rel(page)}:{number}: [{target}]"
        if not resolved.exists():
            problems.append(f"{where} -> {path_part} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            problems.append(f"{where} -> no heading '#{anchor}' in {_rel(resolved)}")
    return problems


def make_targets(makefile: str) -> set[str]:
    """Targets the Makefile defines (``name:`` at the start of a line, not ``NAME :=``)."""
    return {match.group(1) for match in MAKE_TARGET.finditer(makefile)}


def fenced_commands(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line, target) of each ``make TARGET`` and (line, path) of each ``scripts/NAME.py`` in fenced blocks."""
    make: list[tuple[int, str]] = []
    scripts: list[tuple[int, str]] = []
    for number, line in split_fences(text)[1]:
        # Comments are not commands: a comment line, or what follows " #" on a command line.
        command = "" if line.lstrip().startswith("#") else re.split(r"\s#", line, maxsplit=1)[0]
        make += [(number, match.group(2)) for match in MAKE_COMMAND.finditer(command)]
        scripts += [(number, match.group(1)) for match in SCRIPT_PATH.finditer(line)]
    return make, scripts


def missing_commands(text: str, targets: set[str], page: str) -> list[str]:
    """Each ``make TARGET`` the Makefile lacks and each ``scripts/NAME.py`` that does not exist."""
    make, scripts = fenced_commands(text)
    problems = [
        f"{page}:{line}: `make {target}`: no such Makefile target" for line, target in make if target not in targets
    ]
    problems += [f"{page}:{line}: `{path}` does not exist" for line, path in scripts if not (REPO / path).is_file()]
    return problems


def missing_paths(page: Path) -> list[str]:
    """Repository paths named in code spans (``handler/x.py``, ``docs/benchmarks/*.json``) that match nothing."""
    problems = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for match in REPO_PATH.finditer(line):
            path = re.sub(r"[:#].*$", "", match.group(1)).rstrip("/")
            if not any(REPO.glob(path)):
                problems.append(f"{_rel(page)}:{number}: `{match.group(1)}` matches no file")
    return problems


def missing_modules(page: Path) -> list[str]:
    """``*.py`` names in ``page`` that are no file of the repository (matched as a path suffix)."""
    files = {_rel(path) for folder in CODE_DIRS for path in (REPO / folder).rglob("*.py")}
    problems = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for match in PY_NAME.finditer(line):
            name = match.group(1)
            if not any(file == name or file.endswith("/" + name) for file in files):
                problems.append(f"{_rel(page)}:{number}: `{name}` is no file of the repository")
    return problems


def missing_identifiers(page: Path) -> list[str]:
    """Function, class and setting names in ``page``'s code spans that appear nowhere in the code or config."""
    corpus = "\n".join(
        [
            path.read_text(encoding="utf-8")
            for folder in CODE_DIRS
            if folder != "tests"
            for path in (REPO / folder).rglob("*.py")
        ]
        + [(REPO / name).read_text(encoding="utf-8") for name in CONFIG_FILES if (REPO / name).is_file()]
    )
    # Modules are named by their file's stem too (`kserve_storage` for scripts/kserve_storage.py).
    words = set(re.findall(r"\w+", corpus)) | {
        path.stem for folder in CODE_DIRS for path in (REPO / folder).rglob("*.py")
    }
    problems = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        for match in IDENTIFIER.finditer(line):
            parts = match.group(1).split(".")
            if parts[-1] in FILE_SUFFIXES:
                continue
            named = [part for part in parts if "_" in part or CAMEL_CASE.match(part)]
            gone = [part for part in named if part not in words]
            if gone:
                problems.append(
                    f"{_rel(page)}:{number}: `{match.group(0).strip('`')}`: {', '.join(gone)} not in the code"
                )
    return problems


@pytest.mark.parametrize("page", doc_files(), ids=_rel)
def test_every_relative_link_resolves(page: Path) -> None:
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_readme_shows_the_two_commands() -> None:
    make, _ = fenced_commands(README.read_text(encoding="utf-8"))
    assert {"serve", "test", "stop"} <= {target for _, target in make}, "README.md lost `make serve/test/stop`"


@pytest.mark.parametrize("page", prose_pages(), ids=_rel)
def test_every_make_target_and_script_shown_exists(page: Path) -> None:
    targets = make_targets((REPO / "Makefile").read_text(encoding="utf-8"))
    problems = missing_commands(page.read_text(encoding="utf-8"), targets, _rel(page))
    assert not problems, "\n".join(problems)


def test_the_readme_stays_a_front_page() -> None:
    size = len(README.read_bytes())
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes (limit {README_MAX_BYTES}): move reference material into docs/ and link it"
    )


@pytest.mark.parametrize("page", prose_pages(), ids=_rel)
def test_every_repository_path_named_exists(page: Path) -> None:
    problems = missing_paths(page)
    assert not problems, "\n".join(problems)


def test_every_module_the_architecture_page_names_exists() -> None:
    problems = missing_modules(REPO / "docs" / "architecture.md")
    assert not problems, "docs/architecture.md names modules that are gone:\n" + "\n".join(problems)


def test_every_function_the_architecture_page_names_exists() -> None:
    problems = missing_identifiers(REPO / "docs" / "architecture.md")
    assert not problems, "docs/architecture.md names functions or classes that are gone:\n" + "\n".join(problems)


# Self-checks: each parser finds what is broken, so each check above can fail.


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("# API\n\n## Answers and errors\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Two commands\n\n"
        "[ok](docs/api.md#answers-and-errors) [ok](#two-commands) [web](https://example.org/x) [mail](mailto:a@b)\n"
        "[gone](docs/missing.md) [bad anchor](docs/api.md#calling-it) [bad local](#nowhere) ![img](/docs/x.png)\n"
        "`[in code](docs/nope.md)`\n```\n[in a fence](docs/nope.md)\n```\n"
    )
    assert broken_links(page) == [
        "README.md:6: [docs/missing.md] -> docs/missing.md does not exist",
        "README.md:6: [docs/api.md#calling-it] -> no heading '#calling-it' in docs/api.md",
        "README.md:6: [#nowhere] -> no heading '#nowhere' in README.md",
        "README.md:6: [/docs/x.png] -> /docs/x.png does not exist",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("From Python, LangChain, Chroma and OpenAI's SDK", "from-python-langchain-chroma-and-openais-sdk"),
        ("Retrieval quality: `make eval`", "retrieval-quality-make-eval"),
        (
            "int8: every scheme built, gated and timed; the fastest that passes is kept",
            "int8-every-scheme-built-gated-and-timed-the-fastest-that-passes-is-kept",
        ),
    ],
)
def test_anchors_follow_githubs_rule(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
    assert anchors(f"## {heading}\n\n## {heading}\n```\n## {heading}\n```\n") == {anchor, f"{anchor}-1"}


def test_a_missing_make_target_or_script_is_reported() -> None:
    page = (
        "make prose\n\n```bash\nmake serve MODEL=tiny   # not make stop\nmake deploy\n"
        "python scripts/serve.py\n.venv/bin/python scripts/nope.py --help\n# make a note\n```\n"
    )
    targets = make_targets("PY := python\n.PHONY: serve\n$(VENV)/.installed: x\nserve: venv\n\t$(PY) x\n")
    assert targets == {"serve"}
    assert missing_commands(page, targets, "README.md") == [
        "README.md:5: `make deploy`: no such Makefile target",
        "README.md:7: `scripts/nope.py` does not exist",
    ]


def test_missing_paths_and_modules_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "handler" / "engines").mkdir(parents=True)
    (tmp_path / "handler" / "engines" / "torch_engine.py").write_text("")
    page = tmp_path / "page.md"
    page.write_text(
        "`handler/engines/torch_engine.py` `handler/engines/*.py` `handler/gone.py:12`\n"
        "| `engines/torch_engine.py` | `export.py` |\n"
    )
    assert missing_paths(page) == ["page.md:1: `handler/gone.py:12` matches no file"]
    assert missing_modules(page) == ["page.md:2: `export.py` is no file of the repository"]


def test_missing_functions_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "handler").mkdir()
    (tmp_path / "handler" / "startup.py").write_text("class StartedWorker:\n    def start_worker(self): ...\n")
    (tmp_path / "config.properties").write_text("max_request_size=8388608\n")
    page = tmp_path / "page.md"
    page.write_text(
        "`start_worker` `StartedWorker.start_worker(x, y)` `max_request_size` `serve` `torch_engine.py`\n"
        "`_stage` `BuildContext.stage` `OldWorker`\n"
    )
    assert missing_identifiers(page) == [
        "page.md:2: `_stage`: _stage not in the code",
        "page.md:2: `BuildContext.stage`: BuildContext not in the code",
        "page.md:2: `OldWorker`: OldWorker not in the code",
    ]
