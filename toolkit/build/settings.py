"""Every build and image setting defined once; the CLI flags, the image's environment and the docs follow.

Each :class:`Setting` carries its type, default, help text and the names it goes by: the flag of
``scripts/serve.py`` / ``scripts/build_archive.py`` (``toolkit/cli.py``), the image's environment
variable (``toolkit/deploy/container.py``) and the ``make`` variable. From these definitions come the
argparse arguments (:func:`add_arguments`), the image's parsing and validation
(:func:`parse_env`, :func:`check`: a :class:`toolkit.errors.SettingError` naming the variable) and
the configuration table of docs/configuration.md (:func:`markdown_table`; ``python -m toolkit
settings-table --write`` rewrites it there, a test keeps the page equal to it). The Makefile passes
its variables on as these flags; a test checks that each one it names exists with the same default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from handler.settings import FASTEST, EngineName, HandlerSettings, InstructionMode, Precision
from toolkit import REPO_ROOT
from toolkit.build.archive import ARCHIVE_FORMATS
from toolkit.errors import SettingError

NOT_SET = object()


def minutes(raw: str) -> float:
    """A positive number of minutes (fractions allowed: ``0.5``)."""
    value = float(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its Python name, type, default, help and the names it goes by.

    ``image_default`` overrides ``default`` in the image (paths inside the container); ``flag``,
    ``env`` and ``make`` are None where the setting is not offered that way.
    """

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    env: str | None = None
    make: str | None = None
    image_default: Any = NOT_SET

    @property
    def in_image(self) -> Any:
        """The default in the image."""
        return self.default if self.image_default is NOT_SET else self.image_default

    def value_from_text(self, raw: str, where: str) -> Any:
        """``raw`` (a variable's or flag's text) as this setting's value.

        Raises:
            SettingError: ``raw`` is not a value it takes; the message names ``where`` and the choices.
        """
        try:
            value = self.parse(raw)
        except ValueError:
            raise SettingError(f"{where} must be {self.parse.__name__}, got {raw!r}") from None
        check(self, value, where)
        return value


def check(setting: Setting, value: Any, where: str) -> None:
    """Refuse a value outside the setting's choices, naming ``where`` (the variable or flag)."""
    if setting.choices is None or value is None or value in setting.choices:
        return
    if len(setting.choices) == 2:
        allowed = " or ".join(repr(choice) for choice in setting.choices)
    else:
        allowed = f"one of {list(setting.choices)}"
    raise SettingError(f"{where} must be {allowed}, got {value!r}")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model", "demo", "demo, tiny, a model folder, or a hub id owner/name", flag="--model", env="MODEL", make="MODEL"
    ),
    Setting("revision", None, "hub revision to pin (commit, tag, branch)", flag="--revision", make="REVISION"),
    Setting(
        "name",
        "instructor",
        "endpoint name: /predictions/NAME, archive NAME.mar",
        flag="--name",
        env="NAME",
        make="NAME",
    ),
    Setting(
        "instruction_mode",
        None,
        "how instructions are pooled; default: ignore for the demo, exclude (INSTRUCTOR) for every other model",
        choices=tuple(mode.value for mode in InstructionMode),
        flag="--instruction-mode",
        env="INSTRUCTION_MODE",
        make="INSTRUCTION_MODE",
    ),
    Setting(
        "archive_format",
        "default",
        "default (.mar zip), no-archive (a folder: no zip of multi-GB models), tgz",
        choices=tuple(ARCHIVE_FORMATS),
        flag="--format",
        env="ARCHIVE_FORMAT",
        make="FORMAT",
    ),
    Setting(
        "precision",
        Precision.FP32.value,
        "fp32 (exact), bf16 (GPUs, CPUs with AVX512_BF16/AMX), int8 (CPU), "
        "auto (decided per worker, never int8) or fastest (the fastest mode that passes the fidelity gate, "
        "measured at build on this machine)",
        choices=(*(precision.value for precision in Precision), FASTEST),
        flag="--precision",
        env="PRECISION",
        make="PRECISION",
    ),
    Setting(
        "engine",
        EngineName.TORCH.value,
        "torch (GPUs, the fp32 reference) or openvino (CPU; the encoder is exported into the archive at build time)",
        choices=tuple(engine.value for engine in EngineName),
        flag="--engine",
        env="ENGINE",
        make="ENGINE",
    ),
    Setting(
        "workers",
        1,
        "min = max workers written into the archive; each holds its own model copy",
        parse=int,
        flag="--workers",
        env="WORKERS",
        make="WORKERS",
    ),
    Setting(
        "max_length",
        None,
        "tokens per input after truncation; default: the model's own max_seq_length (512 for hkunlp models)",
        parse=int,
        flag="--max-length",
        env="MAX_LENGTH",
        make="MAX_LENGTH",
    ),
    Setting("batch_size", 8, "TorchServe's dynamic batch size", parse=int, flag="--batch-size"),
    Setting("max_batch_delay", 5, "milliseconds TorchServe waits to fill a batch", parse=int, flag="--max-batch-delay"),
    Setting(
        "response_timeout",
        None,
        "seconds; default: sized from the mode's speed measured at build (120-600)",
        parse=int,
        flag="--response-timeout",
    ),
    Setting(
        "max_items",
        HandlerSettings.max_items_per_request,
        "pairs per request before 413",
        parse=int,
        flag="--max-items",
    ),
    Setting(
        "force", False, "build even when the fidelity gate measures cosines below its floor (recorded)", flag="--force"
    ),
    Setting(
        "models_dir",
        REPO_ROOT / "models",
        "downloads and model folders",
        parse=Path,
        flag="--models-dir",
        env="MODELS_DIR",
        image_default=Path("/models"),
    ),
    Setting("export_dir", REPO_ROOT / "model_store", "where archives are written", parse=Path, flag="--export-dir"),
    Setting(
        "model_store",
        Path("/home/serve/model_store"),
        "where the image builds the archive",
        parse=Path,
        env="MODEL_STORE",
    ),
    Setting(
        "workdir",
        Path("/home/serve/run"),
        "TorchServe's start folder in the image (key_file.json, logs)",
        parse=Path,
        env="WORKDIR",
    ),
    Setting(
        "inference_address",
        "http://0.0.0.0:8080",
        "all interfaces: the container's published port",
        env="INFERENCE_ADDRESS",
    ),
    Setting(
        "management_address", "http://127.0.0.1:8081", "loopback unless the user opts in", env="MANAGEMENT_ADDRESS"
    ),
    Setting(
        "metrics_address", "http://0.0.0.0:8082", "for Prometheus scraping (no data, no key)", env="METRICS_ADDRESS"
    ),
    Setting("grpc_inference_port", 7070, "gRPC stays on loopback", parse=int, env="GRPC_INFERENCE_PORT"),
    Setting("grpc_management_port", 7071, "gRPC stays on loopback", parse=int, env="GRPC_MANAGEMENT_PORT"),
    Setting(
        "token_expiration_min",
        60,
        "minutes an inference or management key lives (TorchServe's token_expiration_min); clients given the "
        "key file renew it (docs/api.md#keys); set when TorchServe starts",
        parse=minutes,
        flag="--token-expiration-min",
        env="TOKEN_EXPIRATION_MIN",
        make="TOKEN_EXPIRATION_MIN",
    ),
    Setting(
        "token_authorization",
        "on",
        "off only behind an authenticating gateway: every replica rotates its own keys",
        choices=("on", "off"),
        env="TOKEN_AUTHORIZATION",
    ),
)
BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add the flags of the settings ``names`` to ``parser`` (destination: the setting's name)."""
    for name in names:
        setting = BY_NAME[name]
        assert setting.flag is not None, f"{name} has no flag"
        if setting.default is False:
            parser.add_argument(setting.flag, dest=name, action="store_true", help=setting.help)
            continue
        parser.add_argument(
            setting.flag,
            dest=name,
            type=None if setting.parse is str else setting.parse,
            choices=list(setting.choices) if setting.choices else None,
            default=setting.default,
            help=setting.help,
        )


def parse_env(env: Mapping[str, str], names: Sequence[str]) -> dict[str, Any]:
    """The values the environment sets for the settings ``names`` (unset or empty: left out).

    Raises:
        SettingError: a variable's value is not one its setting takes (the message names the variable).
    """
    values = {}
    for name in names:
        setting = BY_NAME[name]
        raw = env.get(setting.env) if setting.env else None
        if raw:
            values[name] = setting.value_from_text(raw, setting.env)
    return values


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Path):
        return f"`{value.relative_to(REPO_ROOT)}/`" if value.is_relative_to(REPO_ROOT) else f"`{value}`"
    if value is False:
        return "off"
    return f"`{value}`"


TABLE_BEGIN = "<!-- settings table: generated by python -m toolkit.build.settings -->"
TABLE_END = "<!-- end of the settings table -->"


def markdown_table() -> str:
    """The configuration table of docs/configuration.md (between its markers), from :data:`SETTINGS`."""
    lines = [
        "| setting | `make` variable | flag (`scripts/serve.py`, `scripts/build_archive.py`) | image variable | "
        "default (image) | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        default = _shown(setting.default)
        if setting.image_default is not NOT_SET:
            default = f"{default} ({_shown(setting.in_image)})"
        named = setting.choices and all(choice in setting.help for choice in setting.choices)
        choices = f" ({', '.join(setting.choices)})" if setting.choices and not named else ""
        names = [f"`{part}`" if part else "" for part in (setting.make, setting.flag, setting.env)]
        lines.append(f"| `{setting.name}` | {' | '.join(names)} | {default} | {setting.help}{choices} |")
    return "\n".join(lines) + "\n"


CONFIGURATION_PAGE = REPO_ROOT / "docs" / "configuration.md"


def with_table(page: str) -> str:
    """``page`` with the text between its table markers replaced by :func:`markdown_table`."""
    head, found, rest = page.partition(TABLE_BEGIN + "\n")
    _, end, tail = rest.partition(TABLE_END)
    if not found or not end:
        raise ValueError(f"the page lacks the markers {TABLE_BEGIN!r} ... {TABLE_END!r}")
    return f"{head}{TABLE_BEGIN}\n{markdown_table()}{TABLE_END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the settings table, or rewrite docs/configuration.md's (``--write``)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {CONFIGURATION_PAGE.name}")
    if parser.parse_args(argv).write:
        CONFIGURATION_PAGE.write_text(with_table(CONFIGURATION_PAGE.read_text()))
    else:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
