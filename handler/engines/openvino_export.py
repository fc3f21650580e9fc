"""The OpenVINO engine's build-time half: export the encoder into the archive (workers never export).

``ov.convert_model`` traces the transformers module itself (T5 encoder or BERT) behind a
two-input wrapper: ``input_ids`` and ``attention_mask``, both (batch, tokens) int64 with
dynamic axes, and one output, the last hidden state. optimum's T5 export configs are not used:
its feature-extraction config is seq2seq (wants decoder inputs) and its ``t5-encoder`` config
has no attention mask. The model is saved in float32 (``compress_to_fp16=False``; the default
would round the weights to fp16, which T5 does not survive).

int8 is NNCF's post-training quantization (transformer preset), calibrated on instruction +
text pairs tokenized exactly as the server tokenizes them. The Linear layers whose inputs carry
outlier activations (measured on the same calibration batches, :func:`outlier_linears`) are
left out of quantization (NNCF's ignored scope) and run in float.

Both OpenVINO's converter and NNCF send usage events to Google Analytics (``openvino-telemetry``)
unless a consent file in the user's home says no; both stay silent when they see a CI run. The
export runs inside :func:`telemetry_off`, so building an archive sends nothing anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from handler.batching import pad_rows, plan_micro_batches
from handler.encoder import InstructorEncoder, TokenizedRow
from handler.engines import (
    DYNAMIC_INT8,
    OPENVINO_DIR,
    OPENVINO_ENGINE_CONFIG,
    OPENVINO_MODEL,
    STATIC_INT8,
    ExportInputs,
    ExportMode,
)
from handler.engines.torch_engine import load_transformer
from handler.errors import ExportError
from handler.settings import Precision

logger = logging.getLogger(__name__)

# A Linear whose input's largest |activation| is this many times its input's RMS holds outliers
# that one int8 scale per tensor cannot carry (measured: docs/engines.md).
OUTLIER_RATIO = 40.0
CALIBRATION_ROWS_PER_BATCH = 8
# NNCF's accuracy control keeps reverting layers to float until the min cosine to fp32 on its
# validation pairs has dropped by no more than this (the gate's floor is 0.99, on its own probe pairs).
ACCURACY_CONTROL_MAX_DROP = 0.002


class HiddenStateEncoder(torch.nn.Module):
    """A transformers encoder with the engine interface: ids + mask in, last hidden state out.

    OpenVINO names a traced Linear ``__module.<its name in this module>/aten::linear/MatMul``.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@dataclasses.dataclass(frozen=True)
class QuantizationReport:
    """What the int8 export did: the layers kept in float and why."""

    ignored_layers: tuple[str, ...]
    outlier_ratios: dict[str, float]
    calibration_batches: int


# What openvino-telemetry (the converter) and NNCF read to skip sending: a CI run.
TELEMETRY_OFF_ENV = {"CI": "true", "NNCF_CI": "1"}


@contextlib.contextmanager
def telemetry_off() -> Iterator[None]:
    """Run the body with OpenVINO's and NNCF's usage telemetry off, then restore the environment.

    NNCF decides when it is first imported, so the import of ``nncf`` happens inside this too.
    """
    saved = {name: os.environ.get(name) for name in TELEMETRY_OFF_ENV}
    os.environ.update(TELEMETRY_OFF_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def padded_batches(rows: Sequence[TokenizedRow], pad_token_id: int) -> list[dict[str, torch.Tensor]]:
    """Tokenized rows as the engine sees them: length-sorted, padded batches of ids and mask."""
    plan = plan_micro_batches(
        [len(row.input_ids) for row in rows], max_rows=CALIBRATION_ROWS_PER_BATCH, max_tokens=1 << 20
    )
    batches = []
    for indices in plan:
        token_ids = [rows[index].input_ids for index in indices]
        input_ids, attention_mask = pad_rows(token_ids, max(len(ids) for ids in token_ids), pad_token_id)
        batches.append({"input_ids": input_ids, "attention_mask": attention_mask})
    return batches


def convert(model_dir: Path, transformer: torch.nn.Module | None = None) -> tuple[object, torch.nn.Module]:
    """The folder's transformer as an OpenVINO model (fp32, dynamic batch and sequence axes).

    ``transformer`` is the folder's fp32 transformer when the build already holds it (loaded here otherwise).
    """
    import openvino as ov

    transformer = load_transformer(model_dir) if transformer is None else transformer
    if getattr(transformer, "pooler", None) is not None:
        # BERT-style poolers feed no output of ours: without them every Linear is in the graph.
        transformer.pooler = None
    module = HiddenStateEncoder(transformer).eval()
    ones = torch.ones((2, 8), dtype=torch.long)
    example = {"input_ids": ones, "attention_mask": ones}
    dynamic = ov.PartialShape([-1, -1])
    with torch.inference_mode():
        model = ov.convert_model(
            module,
            example_input=example,
            input=[("input_ids", dynamic, ov.Type.i64), ("attention_mask", dynamic, ov.Type.i64)],
        )
    model.outputs[0].get_tensor().set_names({"last_hidden_state"})
    return model, module


def outlier_linears(module: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Per Linear layer: the largest |input activation| over the batches divided by the input's RMS."""
    peaks: dict[str, float] = {}
    squares: dict[str, list[float]] = {}

    def hook(name: str):
        def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            values = args[0].detach().float()
            peaks[name] = max(peaks.get(name, 0.0), float(values.abs().max()))
            squares.setdefault(name, []).append(float(values.pow(2).mean()))

        return record

    handles = [
        layer.register_forward_hook(hook(name))
        for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.Linear)
    ]
    try:
        with torch.inference_mode():
            for batch in batches:
                module(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: peaks[name] / max(sum(squares[name]) / len(squares[name]), 1e-30) ** 0.5 for name in peaks}


def node_name(linear_name: str) -> str:
    """The OpenVINO MatMul node of a traced Linear layer of :class:`HiddenStateEncoder`."""
    return f"__module.{linear_name}/aten::linear/MatMul"


@dataclasses.dataclass(frozen=True)
class CosineValidation:
    """What NNCF's accuracy control measures a candidate model by: min cosine to fp32 on these rows.

    ``reference`` is the fp32 torch encoder (its tokenizer, pooling and head are reused with the
    candidate's compiled model as the engine); ``vectors`` are its fp32 vectors for ``rows``.
    """

    reference: InstructorEncoder
    rows: tuple[TokenizedRow, ...]
    vectors: torch.Tensor

    @classmethod
    def on_pairs(cls, reference: InstructorEncoder, pairs: Sequence[tuple[str, str]]) -> CosineValidation:
        rows = tuple(reference.tokenize(pairs))
        return cls(reference, rows, reference.encode_rows(rows))

    def dataset(self) -> object:
        import nncf

        return nncf.Dataset(list(range(len(self.rows))))

    def metric(self) -> Callable[[object, Iterable[int]], tuple[float, list[float]]]:
        """NNCF's ``validation_fn``: (min cosine, per-row cosines) of a compiled model on the given rows."""
        from handler.engines.openvino_engine import OpenVinoEngine

        def validate(compiled: object, indices: Iterable[int]) -> tuple[float, list[float]]:
            chosen = list(indices)
            candidate = copy.copy(self.reference)
            candidate.engine = OpenVinoEngine(compiled, Precision.FP32)  # type: ignore[arg-type]
            vectors = candidate.encode_rows([self.rows[index] for index in chosen])
            cosines = torch.nn.functional.cosine_similarity(vectors, self.vectors[chosen], dim=1).tolist()
            return min(cosines), cosines

        return validate


def quantize_int8(
    model: object,
    module: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    smooth_quant_alpha: float | None = None,
    validation: CosineValidation | None = None,
) -> tuple[object, QuantizationReport]:
    """Quantize ``model`` in place with NNCF, keeping the outlier-carrying Linear layers in float.

    ``smooth_quant_alpha`` overrides NNCF's SmoothQuant strength for MatMuls (its transformer default
    0.95; -1 turns SmoothQuant off). With ``validation``, NNCF's ``quantize_with_accuracy_control``
    then reverts the layers that cost the most cosine to float until the drop on the validation rows
    is at most :data:`ACCURACY_CONTROL_MAX_DROP`. Both are the fidelity report's trials (``make fidelity``).
    """
    import nncf

    matmuls = {op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"}
    ratios = outlier_linears(module, batches)
    ignored = tuple(sorted(name for name, ratio in ratios.items() if ratio > OUTLIER_RATIO))
    missing = [name for name in ignored if node_name(name) not in matmuls]
    if missing:
        # NNCF would quantize them anyway: the outlier protection must never turn itself off silently.
        raise ExportError(
            f"int8: layers chosen to stay in float (outlier ratio > {OUTLIER_RATIO}) are not in the OpenVINO graph "
            f"under their expected names: {[node_name(name) for name in missing]}; the converter may have renamed "
            "its nodes (openvino upgraded?). Build with precision bf16 or fp32, or fix "
            "handler/engines/openvino_export.py:node_name"
        )
    scope = nncf.IgnoredScope(names=[node_name(name) for name in ignored], validate=True)
    dataset = nncf.Dataset([{key: value.numpy() for key, value in batch.items()} for batch in batches])
    advanced = (
        None
        if smooth_quant_alpha is None
        else nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
        )
    )
    if validation is None:
        quantized = nncf.quantize(
            model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(batches),
            ignored_scope=scope,
            advanced_parameters=advanced,
        )
    else:
        quantized = nncf.quantize_with_accuracy_control(
            model,
            dataset,
            validation.dataset(),
            validation.metric(),
            max_drop=ACCURACY_CONTROL_MAX_DROP,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(batches),
            ignored_scope=scope,
            advanced_quantization_parameters=advanced,
        )
    logger.info("int8: %d Linear layers kept in float (outlier ratio > %s): %s", len(ignored), OUTLIER_RATIO, ignored)
    return quantized, QuantizationReport(ignored, {name: round(ratios[name], 1) for name in ignored}, len(batches))


def export_openvino(
    model_dir: Path,
    target_model_dir: Path,
    int8_calibration: Sequence[tuple[str, str]] | None,
    reference: InstructorEncoder | None,
    int8_scheme: str = STATIC_INT8,
    smooth_quant_alpha: float | None = None,
    validation: Sequence[tuple[str, str]] | None = None,
    transformer: torch.nn.Module | None = None,
) -> QuantizationReport | None:
    """Write ``target_model_dir/openvino/encoder.xml`` (+ .bin) from the transformer in ``model_dir``.

    With ``int8_calibration`` pairs the model is quantized to int8: ``static`` is NNCF's
    post-training quantization calibrated on them as tokenized by ``reference`` (the same tokenizer
    and instruction mode as the server); ``dynamic`` compresses the weights only
    (``nncf.compress_weights`` INT8_ASYM) and leaves the activations to OpenVINO's CPU plugin, which
    quantizes them per group at run time (:data:`handler.engines.OPENVINO_ENGINE_CONFIG` says the group).
    With ``validation`` pairs static int8 runs NNCF's accuracy control on them (:class:`CosineValidation`).
    ``reference`` (the fp32 torch encoder) is needed for int8 only; ``transformer``, when given, is
    converted instead of loading the folder's again.
    """
    import openvino as ov

    with telemetry_off():
        model, module = convert(model_dir) if transformer is None else convert(model_dir, transformer)
        report = None
        if int8_calibration is not None and int8_scheme == DYNAMIC_INT8:
            import nncf

            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        elif int8_calibration is not None:
            if reference is None:
                raise ValueError("static int8 calibrates through the fp32 reference encoder: pass it")
            batches = padded_batches(reference.tokenize(int8_calibration), reference.pad_token_id)
            control = CosineValidation.on_pairs(reference, validation) if validation is not None else None
            model, report = quantize_int8(model, module, batches, smooth_quant_alpha, control)
    target = target_model_dir / OPENVINO_DIR / OPENVINO_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return report


def staged_form(mode: ExportMode) -> str:
    """The export ``mode`` needs: f32 (fp32, bf16), static int8 per its NNCF options, or int8 weights."""
    if mode.precision is Precision.INT8 and mode.scheme:
        return f"{mode.scheme} {mode.smooth_quant_alpha} {mode.accuracy_control}"
    return "f32 export"


def export(model_dir: Path, staged_model: Path, mode: ExportMode, inputs: ExportInputs) -> QuantizationReport | None:
    """Write the export ``mode`` needs into the staged model; returns what static int8 kept in float."""
    int8 = mode.precision is Precision.INT8
    reference = inputs.reference()
    return export_openvino(
        model_dir,
        staged_model,
        inputs.calibration if int8 else None,
        reference if int8 else None,
        mode.scheme or STATIC_INT8,
        mode.smooth_quant_alpha,
        inputs.validation if int8 and mode.accuracy_control else None,
        transformer=fp32_transformer(reference),
    )


def fp32_transformer(reference: InstructorEncoder) -> torch.nn.Module:
    """The transformers module inside the build's fp32 reference encoder (the torch engine's), to convert."""
    transformer = getattr(reference.engine, "transformer", None)
    if not isinstance(transformer, torch.nn.Module) or reference.engine.precision is not Precision.FP32:
        raise ValueError("the OpenVINO export converts the fp32 torch reference encoder's module")
    return transformer


def configure(staged_model: Path, mode: ExportMode) -> None:
    """Tell the worker how to compile the export (nothing to say but for the dynamic int8 scheme)."""
    path = staged_model / OPENVINO_DIR / OPENVINO_ENGINE_CONFIG
    if mode.scheme != DYNAMIC_INT8:
        path.unlink(missing_ok=True)
        return
    path.write_text(json.dumps({"int8_scheme": mode.scheme, "dynamic_quantization_group_size": mode.group}))
