"""The handler settings: validated once, unknown keys and bad values refused."""

from __future__ import annotations

import pytest

from handler.errors import ModelConfigError
from handler.settings import HandlerSettings, InstructionMode, Precision


def test_minimal_settings_take_defaults() -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    assert settings.instruction_mode is InstructionMode.EXCLUDE
    assert settings.max_length is None and settings.max_items_per_request == 128  # None: the model's own
    assert settings.precision is Precision.FP32


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_precision_is_read_and_written(precision: str) -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "precision": precision})
    assert settings.precision is Precision(precision)
    assert settings.to_mapping()["precision"] == precision


def test_round_trip_through_mapping() -> None:
    settings = HandlerSettings.from_mapping({"instruction_mode": "ignore", "max_length": 256, "torch_threads": 2})
    assert HandlerSettings.from_mapping(settings.to_mapping()) == settings


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "'instruction_mode' is required"),
        ({}, "'instruction_mode' is required"),
        ({"instruction_mode": "pool-everything"}, "must be one of ['exclude', 'include', 'ignore']"),
        ({"instruction_mode": "exclude", "max_lenght": 10}, "unknown handler setting(s) ['max_lenght']"),
        ({"instruction_mode": "exclude", "max_length": "512"}, "'max_length' must be an integer, got '512'"),
        ({"instruction_mode": "exclude", "max_length": True}, "'max_length' must be an integer"),
        ({"instruction_mode": "exclude", "max_items_per_request": 0}, "'max_items_per_request' must be at least 1"),
        ({"instruction_mode": "exclude", "torch_threads": -1}, "'torch_threads' must be 0 (auto) or more"),
        (
            {"instruction_mode": "exclude", "max_length": 512, "micro_batch_tokens": 100},
            "must be at least 'max_length' (512)",
        ),
        ({"instruction_mode": "exclude", "micro_batch_padding_pct": 101}, "between 0 and 100"),
        ({"instruction_mode": "exclude", "micro_batch_rows": 0}, "'micro_batch_rows' must be at least 1"),
        ({"instruction_mode": "exclude", "micro_batch_tokens": None}, "'micro_batch_tokens' must be an integer"),
        (
            {"instruction_mode": "exclude", "precision": "fp16"},
            "'precision' must be one of ['fp32', 'bf16', 'int8', 'auto']",
        ),
        ({"instruction_mode": "exclude", "model_subdir": ""}, "'model_subdir' must be a non-empty string"),
    ],
)
def test_bad_settings_are_refused(raw: dict[str, object] | None, message: str) -> None:
    with pytest.raises(ModelConfigError) as raised:
        HandlerSettings.from_mapping(raw)
    assert message in str(raised.value)


def test_threads_is_read_under_its_old_name_too() -> None:
    # Archives built before the rename carry torch_threads in model-config.yaml.
    old = HandlerSettings.from_mapping({"instruction_mode": "exclude", "torch_threads": 3})
    new = HandlerSettings.from_mapping({"instruction_mode": "exclude", "threads": 3})
    assert old == new and new.threads == 3
    assert "threads" in new.to_mapping() and "torch_threads" not in new.to_mapping()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"threads": -1}, "handler setting 'threads' must be 0 (auto) or more"),
        ({"threads": "2"}, "handler setting 'threads' must be an integer"),
        ({"torch_threads": "2"}, "handler setting 'torch_threads' must be an integer"),
        ({"threads": 1, "torch_threads": 1}, "'torch_threads' and 'threads' are the same setting"),
    ],
)
def test_a_bad_threads_setting_names_the_key_written(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ModelConfigError) as err:
        HandlerSettings.from_mapping({"instruction_mode": "exclude", **raw})
    assert message in str(err.value)
