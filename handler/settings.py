"""The handler's settings: the ``handler:`` section of ``model-config.yaml``, validated once."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from handler.errors import ModelConfigError


class InstructionMode(enum.StrEnum):
    """How the instruction of an ``[instruction, text]`` pair takes part in the embedding.

    - ``exclude``: INSTRUCTOR semantics. The encoder reads ``instruction + text``; mean pooling
      skips the instruction's tokens (hkunlp/instructor-* models).
    - ``include``: the encoder reads ``instruction + text`` and pools every token.
    - ``ignore``: the instruction is dropped; only the text is embedded (plain sentence
      embedders such as all-MiniLM-L6-v2, which were not trained with instructions).
    """

    EXCLUDE = "exclude"
    INCLUDE = "include"
    IGNORE = "ignore"


class Precision(enum.StrEnum):
    """The number format the transformer computes in; pooling, Dense and vectors stay float32.

    - ``fp32``: exact (the reference's own format), the default.
    - ``bf16``: bfloat16 weights and activations, on CUDA or on CPUs with bf16 instructions
      (AVX512_BF16 / AMX); T5 was trained in bf16. Never float16: T5 overflows in it.
    - ``int8``: int8 matrix multiplies on CPU (engine ``openvino``: NNCF-quantized at build time;
      engine ``torch``: :mod:`handler.int8`).
    - ``auto``: decided at worker start (:func:`handler.precision.resolve`): bf16 where the hardware
      runs it natively (a GPU, a CPU with AMX/AVX512_BF16), fp32 elsewhere, never int8.
    """

    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"
    AUTO = "auto"


# A build-time request, never in an archive: the builder measures every mode this machine serves and
# writes the fastest that passes its fidelity gate (:mod:`toolkit.build.mode_choice`).
FASTEST = "fastest"


class EngineName(enum.StrEnum):
    """Which runtime computes the transformer's forward pass (:mod:`handler.engines`).

    - ``torch``: the model's own PyTorch modules; GPUs, and the fp32 reference.
    - ``openvino``: an OpenVINO model exported into the archive at build time; CPU only.
    """

    TORCH = "torch"
    OPENVINO = "openvino"


@dataclasses.dataclass(frozen=True)
class HandlerSettings:
    """Validated handler settings. Build with :meth:`from_mapping`; unknown keys are errors.

    Attributes:
        instruction_mode: how instructions are pooled; required, never guessed.
        precision: the transformer's number format (:class:`Precision`), fp32 by default.
        engine: the runtime of the forward pass (:class:`EngineName`), torch by default.
        max_length: tokens per input after truncation; ``None``: the model's own ``max_seq_length``
            (``sentence_bert_config.json``: 512 for hkunlp/instructor-*, 256 for all-MiniLM-L6-v2),
            512 where the folder names none (:func:`handler.model_files.max_length_for`). The
            builder writes the resolved number into the archive.
        max_items_per_request: pairs one request may carry; more is answered 413.
        micro_batch_rows: most rows in one forward pass; ``None``: the engine and precision's
            measured default (:func:`handler.batching.micro_batch_limits`).
        micro_batch_tokens: most padded tokens (rows x longest row) in one forward pass.
        micro_batch_padding_pct: a row joins a micro-batch only when it is at most this many
            percent shorter than the micro-batch's longest row (bounds wasted padding); ``None``:
            the engine and precision's measured default.
        micro_batch_length_multiple: a forward pass's width is its longest row rounded up to a
            multiple of this (within ``max_length``), so input shapes repeat and engines reuse
            the work they cache per shape; 1 turns it off.
        threads: intra-op threads per worker, for torch and OpenVINO alike; 0 means the worker's
            CPUs divided by the workers running. Archives built before carry it as ``torch_threads``
            (:data:`RENAMED_SETTINGS`), still read.
        model_subdir: folder inside the archive that holds the model files.
    """

    instruction_mode: InstructionMode
    precision: Precision = Precision.FP32
    engine: EngineName = EngineName.TORCH
    max_length: int | None = None
    max_items_per_request: int = 128
    micro_batch_rows: int | None = None
    micro_batch_tokens: int = 16384
    micro_batch_padding_pct: int | None = None
    micro_batch_length_multiple: int = 16
    threads: int = 0
    model_subdir: str = "model"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> HandlerSettings:
        """Validate a mapping (the YAML ``handler:`` section) into settings.

        Raises:
            ModelConfigError: a key is unknown, missing or has a wrong type or value.
        """
        raw = dict(raw or {})
        written = _apply_renames(raw)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ModelConfigError(f"unknown handler setting(s) {unknown}; known: {sorted(fields)}")
        if "instruction_mode" not in raw:
            modes = [m.value for m in InstructionMode]
            raise ModelConfigError(f"handler setting 'instruction_mode' is required, one of {modes}")
        for name, choices in ENUM_SETTINGS.items():
            if name in raw:
                raw[name] = _enum_setting(name, choices, raw[name])
        for name, value in raw.items():
            if name in ENUM_SETTINGS:
                continue
            if name == "model_subdir":
                if not isinstance(value, str) or not value:
                    raise ModelConfigError("handler setting 'model_subdir' must be a non-empty string")
            elif value is None and name in DEFAULTED_AT_LOAD:
                continue
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ModelConfigError(f"handler setting '{written.get(name, name)}' must be an integer, got {value!r}")
        if written.get("threads") and raw["threads"] < 0:
            # __post_init__ checks the range too, but only knows the current name.
            raise ModelConfigError(f"handler setting '{written['threads']}' must be 0 (auto) or more")
        return cls(**raw)

    def __post_init__(self) -> None:
        """Ranges are checked on every construction (``dataclasses.replace`` included)."""
        positive = (
            "max_length",
            "max_items_per_request",
            "micro_batch_rows",
            "micro_batch_tokens",
            "micro_batch_length_multiple",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ModelConfigError(f"handler setting '{name}' must be at least 1")
        if self.micro_batch_padding_pct is not None and not 0 <= self.micro_batch_padding_pct <= 100:
            raise ModelConfigError("handler setting 'micro_batch_padding_pct' must be between 0 and 100")
        if self.threads < 0:
            raise ModelConfigError("handler setting 'threads' must be 0 (auto) or more")
        if self.max_length is not None and self.micro_batch_tokens < self.max_length:
            raise ModelConfigError(
                f"handler setting 'micro_batch_tokens' ({self.micro_batch_tokens}) must be at "
                f"least 'max_length' ({self.max_length}) so one full-length row fits"
            )

    def to_mapping(self) -> dict[str, Any]:
        """The settings as plain YAML-ready values."""
        values = dataclasses.asdict(self)
        for name in ENUM_SETTINGS:
            values[name] = getattr(self, name).value
        return values


# Old name -> current name: archives built before a rename keep loading.
RENAMED_SETTINGS = {"torch_threads": "threads"}


def _apply_renames(raw: dict[str, Any]) -> dict[str, str]:
    """Move old names in ``raw`` to their current ones, in place; returns current -> the name written.

    Raises:
        ModelConfigError: a setting is given under both its old and its current name.
    """
    written: dict[str, str] = {}
    for old, new in RENAMED_SETTINGS.items():
        if old in raw:
            if new in raw:
                raise ModelConfigError(f"handler settings '{old}' and '{new}' are the same setting; give only '{new}'")
            raw[new] = raw.pop(old)
            written[new] = old
    return written


# Settings left out (or null) take a default decided at load: the one measured for the worker's engine
# and precision (micro-batch bounds), or the model's own (max_length).
DEFAULTED_AT_LOAD = ("micro_batch_rows", "micro_batch_padding_pct", "max_length")

# Settings whose values are names of an enum's members.
ENUM_SETTINGS: dict[str, type[enum.StrEnum]] = {
    "instruction_mode": InstructionMode,
    "precision": Precision,
    "engine": EngineName,
}


def _enum_setting(name: str, choices: type[enum.StrEnum], value: Any) -> enum.StrEnum:
    try:
        return choices(value)
    except ValueError as err:
        names = [member.value for member in choices]
        raise ModelConfigError(f"handler setting '{name}' must be one of {names}, got {value!r}") from err
