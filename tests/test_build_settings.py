"""Every build setting defined once (toolkit/build/settings.py): flags, image variables, the Makefile, the docs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from toolkit.build.settings import (
    BY_NAME,
    CONFIGURATION_PAGE,
    SETTINGS,
    SettingError,
    add_arguments,
    markdown_table,
    parse_env,
    with_table,
)
from toolkit.cli import ARCHIVE_ARGS
from toolkit.deploy.container import ContainerSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_page_shows_the_settings_as_defined() -> None:
    page = CONFIGURATION_PAGE.read_text()
    assert with_table(page) == page, "run: python -m toolkit settings-table --write"
    assert all(f"`{setting.name}`" in markdown_table() for setting in SETTINGS)


def test_a_page_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks the markers"):
        with_table("no table here")


def makefile_defaults() -> dict[str, str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return {match[1]: match[2].strip() for match in re.finditer(r"^([A-Z_]+) \?=(.*)$", text, re.MULTILINE)}


def test_each_make_variable_is_passed_on_as_its_flag_with_the_same_default() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    defaults = makefile_defaults()
    for setting in SETTINGS:
        if setting.make is None:
            continue
        expected = "" if setting.default is None else str(setting.default)
        assert defaults.get(setting.make) == expected, f"Makefile: {setting.make} ?= {expected}"
        assert f"{setting.flag} $({setting.make})" in makefile, f"Makefile passes {setting.make} as {setting.flag}"


def test_the_build_commands_take_the_flags_as_defined() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ARCHIVE_ARGS)
    defaults = vars(parser.parse_args([]))
    assert defaults == {name: BY_NAME[name].default for name in ARCHIVE_ARGS}
    parsed = vars(parser.parse_args(["--workers", "3", "--force", "--precision", "fastest", "--format", "tgz"]))
    assert (parsed["workers"], parsed["force"], parsed["precision"], parsed["archive_format"]) == (
        3,
        True,
        "fastest",
        "tgz",
    )


def test_the_image_reads_each_of_its_settings_from_its_variable() -> None:
    names = [field for field in ContainerSettings.__dataclass_fields__]
    assert all(BY_NAME[name].env for name in names)
    assert ContainerSettings.from_env({}) == ContainerSettings()
    settings = ContainerSettings.from_env({"WORKERS": "2", "MODELS_DIR": "/data", "PRECISION": "int8", "NAME": ""})
    assert (settings.workers, settings.models_dir, settings.precision, settings.name) == (
        2,
        Path("/data"),
        "int8",
        "instructor",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKERS": "two"}, r"WORKERS must be int, got 'two'"),
        ({"ENGINE": "onnx"}, r"ENGINE must be 'torch' or 'openvino', got 'onnx'"),
        ({"GRPC_INFERENCE_PORT": "7o70"}, r"GRPC_INFERENCE_PORT must be int"),
    ],
)
def test_a_bad_variable_is_named_with_what_it_takes(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        ContainerSettings.from_env(env)
    names = [name for name, setting in BY_NAME.items() if setting.env in env]
    with pytest.raises(ValueError):  # the image's entrypoint reports ValueErrors as one line
        parse_env(env, names)
