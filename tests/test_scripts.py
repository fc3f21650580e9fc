"""scripts/ run as files (``python scripts/NAME.py``, from another folder), as the Makefile and users run them.

The functions behind them are tested in test_cli.py and elsewhere; here it is what only a file run
shows: the repository root on ``sys.path`` (``_bootstrap``), the ``__main__`` guard, the exit code,
and one line on stderr, never a traceback, for an error the user can act on. No TorchServe starts.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from handler.model_files import read_layout
from tests.conftest import REPO_ROOT, write_test_config
from toolkit.build.archive import WorkerConfig
from toolkit.serve.server import free_port

SCRIPTS = REPO_ROOT / "scripts"
PROJECT_PACKAGES = ("handler", "toolkit", "tests", "instructor_client")


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def _top_level_imports(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("script", sorted(path.name for path in SCRIPTS.glob("*.py") if path.name != "_bootstrap.py"))
def test_every_script_bootstraps_before_project_imports_and_has_a_main_guard(script: str) -> None:
    """The shape every script needs to run as a file; the tests below run a sample of them."""
    tree = ast.parse((SCRIPTS / script).read_text())
    imports = _top_level_imports(tree)
    project = [index for index, name in enumerate(imports) if name.split(".")[0] in PROJECT_PACKAGES]
    assert "_bootstrap" in imports and all(index > imports.index("_bootstrap") for index in project), imports
    guards = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert guards, f"{script} has no `if __name__ == '__main__':` block"


def test_make_tiny_model_writes_a_loadable_model(tmp_path: Path) -> None:
    result = run_script("make_tiny_model.py", str(tmp_path / "tiny"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "tiny")
    assert read_layout(tmp_path / "tiny").normalize


def test_management_script_without_a_server_says_so_in_one_line(tmp_path: Path) -> None:
    keys = {kind: {"key": f"{kind}-key"} for kind in ("management", "inference", "API")}
    (tmp_path / "key_file.json").write_text(json.dumps(keys))
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script("describe.py", "--key-file", "key_file.json", "--management-url", url, cwd=tmp_path)
    assert_one_line_error(result, f"no answer from {url}/models/instructor: is TorchServe running?")


@pytest.mark.integration  # runs the real launcher (torchserve --start / scripts/serve.py)
def test_serve_script_refuses_an_unknown_model_before_starting_anything(tmp_path: Path) -> None:
    write_test_config(tmp_path, tmp_path / "model_store")
    result = run_script("serve.py", "--model", "./no/such/folder", "--workdir", str(tmp_path), cwd=tmp_path)
    assert_one_line_error(result, "neither demo, tiny, an existing folder nor a hub id")
    assert not (tmp_path / ".run").exists() and not (tmp_path / "key_file.json").exists()


def test_stop_script_with_nothing_running(tmp_path: Path) -> None:
    write_test_config(tmp_path, tmp_path / "model_store")
    result = run_script("stop.py", "--workdir", str(tmp_path), cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "TorchServe was not running\n", "")


def test_validate_manifests_script(tmp_path: Path) -> None:
    result = run_script("validate_manifests.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{len(list((REPO_ROOT / 'deploy').rglob('*.yaml')))} manifests valid\n"


def test_kserve_storage_script_lays_out_an_archive_and_names_a_missing_one(tmp_path: Path) -> None:
    archive = tmp_path / "instructor.mar"
    with zipfile.ZipFile(archive, "w") as bundle:  # only what the layout reads from a real .mar
        bundle.writestr("model-config.yaml", yaml.safe_dump(WorkerConfig().to_yaml_mapping()))
    result = run_script("kserve_storage.py", "--archive", str(archive), "storage", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "storage" / "model-store" / "instructor.mar").is_file()
    assert "model_snapshot=" in (tmp_path / "storage" / "config" / "config.properties").read_text()
    missing = run_script("kserve_storage.py", "--archive", str(tmp_path / "absent.mar"), "storage", cwd=tmp_path)
    assert_one_line_error(missing, "absent.mar does not exist: build it first (make archive)")
