"""``python -m toolkit``: every command resolves, every thin script names one, the list and errors."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.commands import BY_NAME, COMMANDS, main, run_command, usage

REPO = Path(__file__).resolve().parent.parent
# Scripts that are not a toolkit command: sys.path setup, and the golden-vector maker (legacy venv).
NOT_COMMANDS = {"_bootstrap.py", "make_golden_vectors.py"}


def script_command(script: Path) -> str:
    """The command name a thin script passes to ``run_command``."""
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_command":
            return node.args[0].value
    raise AssertionError(f"{script.name} does not call run_command")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_every_command_resolves_to_a_main(command) -> None:
    module, function = command.target.split(":")
    assert callable(getattr(importlib.import_module(module), function))


THIN_SCRIPTS = sorted(path for path in (REPO / "scripts").glob("*.py") if path.name not in NOT_COMMANDS)


@pytest.mark.parametrize("script", THIN_SCRIPTS, ids=lambda path: path.name)
def test_every_thin_script_runs_a_known_command(script: Path) -> None:
    assert script_command(script) in BY_NAME


def test_the_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {command.name} " in listed for command in COMMANDS)


def test_an_unknown_command_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and usage() in err


def test_python_dash_m_toolkit_runs_a_command() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; sys.argv = ['toolkit', 'validate-manifests']; "
            "runpy.run_module('toolkit', run_name='__main__')",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "manifests valid" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_every_command_answers_help(command, capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` prints a usage line and exits 0: nothing is built, started or sent."""
    with pytest.raises(SystemExit) as raised:
        run_command(command.name, ["--help"])
    assert raised.value.code == 0
    assert "usage:" in capsys.readouterr().out
