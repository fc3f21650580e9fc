"""Each client extra imports with only its own package installed (the others blocked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

# Extra -> (the module it enables, the packages of the other extras, blocked while importing it).
EXTRAS = {
    "langchain": ("instructor_client.langchain", ("chromadb",)),
    "chroma": ("instructor_client.chroma", ("langchain_core", "langchain")),
    "none": ("instructor_client", ("chromadb", "langchain_core", "langchain")),
}

BLOCKING_IMPORT = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[2].split(","))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    import importlib
    importlib.import_module(sys.argv[1])
    print("imported", sys.argv[1])
    """
)


def import_with_blocked(module: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_IMPORT, module, ",".join(blocked)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_imports_without_the_other_extras_packages(extra: str) -> None:
    module, blocked = EXTRAS[extra]
    result = import_with_blocked(module, blocked)
    assert result.returncode == 0, result.stderr
    assert f"imported {module}" in result.stdout


def test_the_blocker_really_blocks() -> None:
    """The check above can fail: importing an adapter with its own package blocked does fail."""
    result = import_with_blocked("instructor_client.chroma", ("chromadb",))
    assert result.returncode != 0
    assert "blocked by the test" in result.stderr
