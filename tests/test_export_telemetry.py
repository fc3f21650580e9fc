"""Building an OpenVINO archive sends no usage telemetry (openvino-telemetry, NNCF) anywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

from handler.engines import openvino_export as export


class StopExportError(Exception):
    """Raised by the stand-in converter once it has looked at the environment."""


def consent() -> ConsentCheckResult:
    """What openvino-telemetry decides for the converter and NNCF (no dialog, silent in CI)."""
    return OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True)


def test_without_a_consent_file_the_libraries_would_send(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The premise: with no opt-out file in the home folder, the converter's telemetry is on."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("CI", "TF_BUILD", "JENKINS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert consent() is ConsentCheckResult.NO_FILE


def test_the_export_runs_with_telemetry_declined_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NNCF_CI", "kept")
    seen: dict[str, object] = {}

    def converter(model_dir: Path) -> None:
        seen["consent"] = consent()
        seen["nncf"] = os.environ.get("NNCF_CI")
        raise StopExportError

    monkeypatch.setattr(export, "convert", converter)
    with pytest.raises(StopExportError):
        export.export_openvino(tmp_path, tmp_path / "out", None, reference=None)  # type: ignore[arg-type]
    assert seen == {"consent": ConsentCheckResult.DECLINED, "nncf": "1"}
    assert "CI" not in os.environ and os.environ["NNCF_CI"] == "kept"
