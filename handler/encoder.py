"""The encoder: tokenize pairs, run the transformer, pool with a per-row instruction mask.

This is where the instruction is masked. Per pair, as ``INSTRUCTOR.encode`` does it
(InstructorEmbedding 1.0.1):

1. the text is stripped, the model reads ``(instruction + text).strip()`` (no separator);
2. the stripped instruction alone is tokenized; ``context_len = len(tokens) - 1`` (T5 appends one
   ``</s>``), and a context of one token or less becomes 0;
3. the encoder attends to the whole sequence; mean pooling skips the first ``context_len``
   positions;
4. the model's Dense layers and Normalize follow.

Every row carries its own ``context_len``, so rows with different instructions share one
forward pass.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from handler import precision as precisions
from handler.batching import MicroBatchLimits, micro_batch_limits, pad_rows, padding_tokens, plan_micro_batches
from handler.engines import Engine, engine_spec, load_engine
from handler.engines.torch_engine import torch_out_of_memory
from handler.errors import ModelConfigError
from handler.model_files import load_dense, max_length_for, read_layout
from handler.pooling import PoolingMode, check_instruction_mode, pool
from handler.settings import HandlerSettings, InstructionMode

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TokenizedRow:
    """One pair as token ids, how many leading tokens pooling skips, and its length before truncation.

    ``full_length`` is 0 when it was not measured (then the row counts as not truncated).
    """

    input_ids: list[int]
    context_len: int
    full_length: int = 0

    @property
    def truncated(self) -> bool:
        """Whether tokens were cut at ``max_length``."""
        return self.full_length > len(self.input_ids)


@dataclasses.dataclass(frozen=True)
class EncodeReport:
    """What one :meth:`InstructorEncoder.encode_rows_reported` call did, for metrics.

    Attributes:
        micro_batches: forward passes run.
        padding_tokens: padded positions computed and thrown away, over all micro-batches.
        engine_seconds: wall time inside the forward passes (transformer, pooling, Dense).
    """

    micro_batches: int = 0
    padding_tokens: int = 0
    engine_seconds: float = 0.0


def instruction_context_len(instruction_token_count: int) -> int:
    """INSTRUCTOR's rule: drop the end token; one token or less pools with the text (0)."""
    context_len = instruction_token_count - 1
    return 0 if context_len <= 1 else context_len


class InstructorEncoder:
    """Pairs in, L2-normalized (when the model says so) float32 vectors out."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: PreTrainedTokenizerBase,
        head: torch.nn.Module,
        normalize: bool,
        settings: HandlerSettings,
        do_lower_case: bool = False,
        device: torch.device | str = "cpu",
        pooling: PoolingMode = PoolingMode.MEAN,
        resolved: precisions.ResolvedPrecision | None = None,
    ) -> None:
        check_instruction_mode(pooling, settings.instruction_mode)
        if settings.instruction_mode is InstructionMode.EXCLUDE:
            _check_end_token_only(tokenizer)
        self.device = torch.device(device)
        self.engine = engine
        self.resolved = resolved or precisions.ResolvedPrecision(engine.precision, engine.precision, "given engine")
        self.head = head.to(self.device).eval()
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.settings = settings
        self.do_lower_case = do_lower_case
        self.pooling = pooling
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_folder(
        cls,
        model_dir: str | Path,
        settings: HandlerSettings,
        device: torch.device | str = "cpu",
        cpu_flags: frozenset[str] | None = None,
        threads: int | None = None,
        resolved: precisions.ResolvedPrecision | None = None,
    ) -> InstructorEncoder:
        """Load a sentence-transformers model folder from disk only (no network).

        The precision is resolved here (``auto`` decided from ``device`` and ``cpu_flags``, read
        from the machine when not given), unless ``resolved`` is given (the build-time gate
        measures a mode on a machine that may not serve it), and the engine named by
        ``settings.engine`` is loaded. An unset ``max_length`` becomes the model's own.
        """
        device = torch.device(device)
        layout = read_layout(model_dir, require_weights=engine_spec(settings.engine).needs_torch_weights)
        settings = dataclasses.replace(settings, max_length=max_length_for(settings.max_length, layout))
        resolved = resolved or precisions.resolve(settings.precision, settings.engine, device, cpu_flags)
        engine = load_engine(settings.engine, layout.root, resolved.precision, device, threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(layout.root, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            # A malformed tokenizer.json raises KeyError inside tokenizers' loader.
            raise ModelConfigError(f"{layout.root}: cannot load the tokenizer: {err}") from err
        head = torch.nn.Sequential(*(load_dense(path) for path in layout.dense_dirs))
        return cls(
            engine,
            tokenizer,
            head,
            normalize=layout.normalize,
            settings=settings,
            do_lower_case=layout.do_lower_case,
            device=device,
            pooling=layout.pooling,
            resolved=resolved,
        )

    @property
    def limits(self) -> MicroBatchLimits:
        """This worker's micro-batch bounds: the settings', else its engine and precision's defaults."""
        return micro_batch_limits(self.settings, self.engine.name, self.resolved.precision)

    def plan(self, lengths: Sequence[int]) -> tuple[list[list[int]], list[int]]:
        """Rows (by length) as micro-batches of row indices, and each micro-batch's padded width."""
        limits = self.limits
        plan = plan_micro_batches(lengths, limits.rows, limits.tokens, limits.padding_pct)
        widths = [limits.padded_width(max(lengths[i] for i in indices), self.settings.max_length) for indices in plan]
        return plan, widths

    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> list[TokenizedRow]:
        """Token ids and pooling context per pair, following ``settings.instruction_mode``."""
        mode = self.settings.instruction_mode
        if mode is InstructionMode.IGNORE:
            inputs = [text.strip() for _, text in pairs]
        else:
            # The reference strips the text, then the joined string again.
            inputs = [(instruction + text.strip()).strip() for instruction, text in pairs]
        ids = self._token_ids(inputs)
        full_lengths = self._full_lengths(inputs, ids)
        if mode is not InstructionMode.EXCLUDE:
            return [TokenizedRow(row, 0, full) for row, full in zip(ids, full_lengths, strict=True)]
        # A batch usually repeats a few instructions: tokenize each distinct one once.
        instructions = [instruction.strip() for instruction, _ in pairs]
        distinct = list(dict.fromkeys(instructions))
        token_counts = dict(zip(distinct, (len(ids) for ids in self._token_ids(distinct)), strict=True))
        rows = []
        for row, full, instruction in zip(ids, full_lengths, instructions, strict=True):
            context_len = instruction_context_len(token_counts[instruction])
            # Keep at least the last token pooled when tokenizing the joined string merged
            # pieces across the boundary (the reference would fail an assertion there).
            rows.append(TokenizedRow(row, min(context_len, len(row) - 1), full))
        return rows

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        if self.do_lower_case:
            texts = [text.lower() for text in texts]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.settings.max_length)
        return encoded["input_ids"]

    def _full_lengths(self, texts: list[str], ids: list[list[int]]) -> list[int]:
        """Token counts before truncation; only rows that reached ``max_length`` are tokenized again."""
        lengths = [len(row) for row in ids]
        at_limit = [index for index, length in enumerate(lengths) if length >= self.settings.max_length]
        if at_limit:
            again = [texts[index].lower() if self.do_lower_case else texts[index] for index in at_limit]
            untruncated = self.tokenizer(again, truncation=False, verbose=False)["input_ids"]
            for index, row in zip(at_limit, untruncated, strict=True):
                lengths[index] = len(row)
        return lengths

    def encode(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Embed pairs in length-sorted micro-batches; rows come back in input order."""
        return self.encode_rows(self.tokenize(pairs))

    def encode_rows(self, rows: Sequence[TokenizedRow]) -> torch.Tensor:
        """Embed tokenized rows in length-sorted micro-batches; vectors come back in row order."""
        return self.encode_rows_reported(rows)[0]

    @torch.inference_mode()
    def encode_rows_reported(self, rows: Sequence[TokenizedRow]) -> tuple[torch.Tensor, EncodeReport]:
        """:meth:`encode_rows`, plus what it took (micro-batches, padding, time in the forward passes)."""
        lengths = [len(row.input_ids) for row in rows]
        plan, widths = self.plan(lengths)
        vectors: list[torch.Tensor | None] = [None] * len(rows)
        engine_seconds = 0.0
        for indices, width in zip(plan, widths, strict=True):
            started = time.perf_counter()
            embedded = self._forward([rows[index] for index in indices], width)
            engine_seconds += time.perf_counter() - started
            for index, vector in zip(indices, embedded, strict=True):
                vectors[index] = vector
        report = EncodeReport(len(plan), padding_tokens(plan, lengths, widths), engine_seconds)
        return (torch.stack(vectors) if vectors else torch.empty(0)), report

    def _forward(self, rows: Sequence[TokenizedRow], width: int) -> torch.Tensor:
        input_ids, attention_mask = pad_rows([row.input_ids for row in rows], width, self.pad_token_id)
        context_lens = torch.tensor([row.context_len for row in rows])
        hidden = self.engine.last_hidden_state(input_ids, attention_mask)
        # Pooling, Dense and Normalize are torch whatever the engine: its allocation failures too.
        with torch_out_of_memory():
            # Pool in float32 whatever the engine computed in (bf16 sums lose digits).
            hidden = hidden.to(self.device).float()
            pooled = pool(self.pooling, hidden, attention_mask.to(self.device), context_lens.to(self.device))
            embedded = self.head(pooled)
            if self.normalize:
                embedded = torch.nn.functional.normalize(embedded, p=2, dim=1)
            return embedded.float().cpu()


def _check_end_token_only(tokenizer: PreTrainedTokenizerBase) -> None:
    """INSTRUCTOR's ``- 1`` rule assumes one end token and no start token (T5 tokenizers)."""
    empty = tokenizer("")["input_ids"]
    if len(empty) != 1:
        raise ModelConfigError(
            "instruction_mode 'exclude' needs a tokenizer that appends exactly one end token "
            f"(T5-style); this one turns an empty string into {len(empty)} tokens. "
            "Use instruction_mode 'include' or 'ignore' for this model."
        )
