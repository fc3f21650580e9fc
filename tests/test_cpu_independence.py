"""The suite never depends on this machine's CPU: the precision tests pass on a CPU without bf16.

CI machines differ (some have AVX512_BF16 or AMX, some not). Every test that builds a bf16
encoder or decides ``auto`` injects its flags; this test proves it by running those tests in a
fresh pytest whose machine, as ``handler.precision.cpu_flags`` sees it, has only AVX2
(``INSTRUCTOR_CPU_FLAGS``). Only unit tests run there: served tests share one server per session.
"""

from __future__ import annotations

import os
import subprocess
import sys

from handler.precision import CPU_FLAGS_ENV
from tests.conftest import REPO_ROOT

# The tests that decide or measure a precision (and would read this machine's flags if they forgot).
PRECISION_TESTS = (
    "tests/test_precision.py",
    "tests/test_archive.py::test_bf16_archive_stores_transformer_weights_in_bf16",
    "tests/test_worker_fidelity.py",
    "tests/test_engines.py::test_auto_chooses_by_the_given_flags",
    "tests/test_engines.py::test_serve_says_when_auto_would_be_faster_with_the_measured_fidelity",
    "tests/test_engines.py::test_the_hint_measures_what_torch_bf16_serves_with_one_copy",
)


def test_precision_tests_pass_on_a_cpu_without_bf16() -> None:
    env = os.environ | {CPU_FLAGS_ENV: "avx2"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration"]
    result = subprocess.run(
        [*command, *PRECISION_TESTS], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
