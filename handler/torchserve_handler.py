"""TorchServe glue: ``InstructorHandler`` turns a dynamic batch into per-request answers.

TorchServe imports this file as the archive's handler, so it defines exactly one class. Each
request of a batch is validated on its own: a bad one gets its own 4xx through
``context.set_response_status(..., idx)`` while the others are encoded together. After
tokenization, a request that asked not to truncate (``truncate: false``) and holds a pair over
``max_length`` tokens gets its own 413, and so does one over the worker's token budget
(:mod:`handler.budget`); one that would overfill the batch gets a 503 to retry. An engine that
runs out of memory fails its batch with 507. Every batch is counted in the handler's metrics
(``handler.metrics``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.batching import flatten_pairs, split_by_request
from handler.budget import TokenBudget, admit
from handler.cpus import CpuShare
from handler.encoder import InstructorEncoder, TokenizedRow
from handler.errors import EngineOutOfMemory, InternalError, OutOfMemoryError, ServingError
from handler.metrics import BatchStats, HandlerMetrics
from handler.placement import THREAD_RECHECK_S, threads_follow_scaling, worker_cpu_share, worker_device
from handler.request_parsing import EmbeddingRequest, parse_request
from handler.responses import TokenUsage, success_body
from handler.settings import HandlerSettings
from handler.startup import StartedWorker, start_worker
from handler.truncation import length_error

logger = logging.getLogger(__name__)

# TorchServe's own default responseTimeout (seconds), for an archive whose model-config.yaml has none.
DEFAULT_RESPONSE_TIMEOUT_S = 120
OUT_OF_MEMORY = OutOfMemoryError("the worker ran out of memory: send fewer or shorter inputs")

# One embedded pair: its vector and its tokens.
EmbeddedRow = tuple[list[float], TokenizedRow]


def worker_details(started: StartedWorker, cpus: CpuShare | None = None) -> dict[str, Any]:
    """What describe and the worker log say about how this worker computes."""
    encoder = started.encoder
    return {
        "engine": encoder.engine.name.value,
        "precision": encoder.resolved.precision.value,
        "requested_precision": encoder.resolved.requested.value,
        "reason": encoder.resolved.reason,
        "micro_batch": encoder.limits.describe(),
        "fidelity": started.fidelity,
        "fidelity_check": started.check.to_mapping(),
        "token_budget": started.budget.describe(),
        "cpus": None if cpus is None else cpus.describe(),
    }


class InstructorHandler(BaseHandler):
    """Serves native, KServe v1/v2 and OpenAI bodies (see ``handler.request_parsing``)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder: InstructorEncoder | None = None
        self.settings: HandlerSettings | None = None
        self.metrics: HandlerMetrics | None = None
        self.budget: TokenBudget | None = None
        self.cpus: CpuShare | None = None
        self.details: dict[str, Any] = {}
        self._min_workers = 1
        self._threads_checked_at = 0.0

    def initialize(self, context: Any) -> None:
        """Validate settings, place the model, load it, check its fidelity here, measure its budget."""
        yaml_config = context.model_yaml_config or {}
        settings = HandlerSettings.from_mapping(yaml_config.get("handler"))
        properties = context.system_properties
        device = worker_device(settings, properties.get("gpu_id"))
        threads = None
        if device.type == "cpu":
            self._min_workers = int(yaml_config.get("minWorkers", 1))
            self.cpus = worker_cpu_share(settings, self._min_workers)
            threads = self.cpus.threads
            torch.set_num_threads(threads)
        timeout = float(yaml_config.get("responseTimeout", DEFAULT_RESPONSE_TIMEOUT_S))
        started = start_worker(Path(properties["model_dir"]), settings, device, timeout, threads)
        self.encoder, self.budget = started.encoder, started.budget
        # As resolved at load (an unset max_length is the model's own): what describe shows.
        self.settings = self.encoder.settings
        self.metrics = HandlerMetrics(context.metrics, context.model_name)
        self.details = worker_details(started, self.cpus)
        self._threads_checked_at = time.monotonic()
        self.initialized = True
        logger.info(
            "INSTRUCTOR handler ready: device=%s threads=%d (%s) engine=%s precision=%s (%s) micro_batch=%s "
            "fidelity=%s fidelity_check=%s token_budget=%s settings=%s",
            device,
            threads or torch.get_num_threads(),
            self.cpus.source if self.cpus else "not a CPU worker",
            self.settings.engine.value,
            self.encoder.resolved.precision.value,
            self.encoder.resolved.reason,
            json.dumps(self.details["micro_batch"]),
            json.dumps(self.details["fidelity"]),
            json.dumps(self.details["fidelity_check"]),
            json.dumps(self.details["token_budget"]),
            self.settings.to_mapping(),
        )

    def _rebalance_threads(self) -> None:
        """A CPU worker follows the worker count after scaling, where :func:`threads_follow_scaling` says so."""
        now = time.monotonic()
        if self.cpus is None or not threads_follow_scaling(self.settings):
            return
        if now - self._threads_checked_at < THREAD_RECHECK_S:
            return
        self._threads_checked_at = now
        share = worker_cpu_share(self.settings, self._min_workers)
        if share.threads != self.cpus.threads:
            logger.info(
                "workers now %d: threads %d -> %d (%s)", share.workers, self.cpus.threads, share.threads, share.source
            )
            torch.set_num_threads(share.threads)
            self.cpus = share
            self.details["cpus"] = share.describe()

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Answer every request of the batch: its vectors, or its own error."""
        assert self.encoder is not None and self.settings is not None, "handler not initialized"
        if context.get_request_header(0, "describe") == "True":
            # GET /models/NAME?customized=true: not a request to embed or count.
            return [json.dumps(self.describe_handle()).encode("utf-8")]
        self._rebalance_threads()
        started = time.perf_counter()
        requests: list[EmbeddingRequest | None] = []
        errors: dict[int, ServingError] = {}
        for index, request in enumerate(data):
            try:
                requests.append(parse_request(request, self.settings.max_items_per_request))
            except ServingError as err:
                requests.append(None)
                errors[index] = err
        logger.info(
            "batch of %d requests: %d rejected, %d pairs to encode",
            len(data),
            len(errors),
            sum(len(request.pairs) for request in requests if request is not None),
        )
        stats = BatchStats()
        answers = self._encode_valid(requests, errors, stats)
        bodies = [
            self._respond(context, index, requests[index], answers[index], errors.get(index))
            for index in range(len(data))
        ]
        stats.statuses = [int(errors[index].status) if index in errors else 200 for index in range(len(data))]
        stats.handle_seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.record(stats)
        return bodies

    def describe_handle(self) -> dict[str, Any]:
        """``customizedMetadata`` of ``GET /models/NAME?customized=true``: the handler's settings, and the
        engine, precision as resolved in this worker and the archive's fidelity figures."""
        assert self.settings is not None
        return {"handler": self.settings.to_mapping(), **self.details}

    def _encode_valid(
        self, requests: list[EmbeddingRequest | None], errors: dict[int, ServingError], stats: BatchStats
    ) -> list[list[EmbeddedRow] | None]:
        """Each valid request's rows as (vector, tokens); None where it failed (its error is in ``errors``)."""
        pairs = flatten_pairs(requests)
        if not pairs:
            return [None] * len(requests)
        kept: list[EmbeddingRequest | None] = list(requests)
        rows: list[TokenizedRow] | None = None
        try:
            started = time.perf_counter()
            rows = self.encoder.tokenize(pairs)
            stats.tokenize_seconds = time.perf_counter() - started
            kept, rows = self._refuse_too_long(requests, rows, errors)
            kept, rows = self._refuse_over_budget(kept, rows, errors)
            if not rows:
                return [None] * len(requests)
            vectors, stats.encode = self.encoder.encode_rows_reported(rows)
            embedded = list(zip(vectors.tolist(), rows, strict=True))
        except (MemoryError, EngineOutOfMemory):
            logger.exception("out of memory encoding %d pairs", len(pairs))
            if rows is not None and sum(request is not None for request in kept) > 1:
                # One request's size should not fail the others: each is tried alone.
                return self._encode_each_alone(kept, rows, errors, stats)
            failure: ServingError = OUT_OF_MEMORY
        except Exception:
            logger.exception("encoding %d pairs failed", len(pairs))
            failure = InternalError("the model failed to encode this batch; the server log has details")
        else:
            stats.count_embedded(rows)
            return split_by_request(kept, embedded)
        stats.encode = None
        for index, request in enumerate(kept):
            if request is not None:
                errors[index] = failure
        return [None] * len(requests)

    def _encode_each_alone(
        self,
        requests: list[EmbeddingRequest | None],
        rows: list[TokenizedRow],
        errors: dict[int, ServingError],
        stats: BatchStats,
    ) -> list[list[EmbeddedRow] | None]:
        """After a batch ran out of memory: encode each request on its own; only those that fail alone get 507."""
        answers: list[list[EmbeddedRow] | None] = [None] * len(requests)
        stats.encode = None
        for index, group in enumerate(split_by_request(requests, rows)):
            if not group:
                continue
            try:
                vectors = self.encoder.encode_rows(group)
            except (MemoryError, EngineOutOfMemory):
                logger.exception("out of memory encoding request %d alone (%d pairs)", index, len(group))
                errors[index] = OUT_OF_MEMORY
                continue
            except Exception:
                logger.exception("encoding request %d alone failed", index)
                errors[index] = InternalError("the model failed to encode this request; the server log has details")
                continue
            answers[index] = list(zip(vectors.tolist(), group, strict=True))
            stats.count_embedded(group)
        return answers

    def _refuse_too_long(
        self, requests: list[EmbeddingRequest | None], rows: list[TokenizedRow], errors: dict[int, ServingError]
    ) -> tuple[list[EmbeddingRequest | None], list[TokenizedRow]]:
        """Give each ``truncate: false`` request with an over-long pair its 413; the rest and their rows stay."""
        kept: list[EmbeddingRequest | None] = []
        kept_rows: list[TokenizedRow] = []
        for index, (request, request_rows) in enumerate(zip(requests, split_by_request(requests, rows), strict=True)):
            error = None if request is None else length_error(request, request_rows, self.settings.max_length)
            if error is not None:
                errors[index] = error
            if request is None or error is not None:
                kept.append(None)
                continue
            kept.append(request)
            kept_rows += request_rows
        return kept, kept_rows

    def _refuse_over_budget(
        self, requests: list[EmbeddingRequest | None], rows: list[TokenizedRow], errors: dict[int, ServingError]
    ) -> tuple[list[EmbeddingRequest | None], list[TokenizedRow]]:
        """Give requests over the token budget their 413 (alone) or 503 (beside the batch's others)."""
        if self.budget is None:
            return requests, rows
        per_request = split_by_request(requests, rows)
        tokens = [None if group is None else sum(len(row.input_ids) for row in group) for group in per_request]
        longest = [max((len(row.input_ids) for row in group), default=1) if group else 1 for group in per_request]
        fits = [self.budget.tokens_per_batch // length for length in longest]
        refused = admit(tokens, self.budget, fits)
        if not refused:
            return requests, rows
        errors.update(refused)
        kept = [None if index in refused else request for index, request in enumerate(requests)]
        kept_rows = [row for index, group in enumerate(per_request) if group and index not in refused for row in group]
        return kept, kept_rows

    @staticmethod
    def _respond(
        context: Any,
        index: int,
        request: EmbeddingRequest | None,
        rows: list[EmbeddedRow] | None,
        error: ServingError | None,
    ) -> bytes:
        context.set_response_content_type(index, "application/json")
        if error is not None:
            context.set_response_status(int(error.status), error.status.phrase, idx=index)
            return json.dumps(error.body()).encode("utf-8")
        assert request is not None and rows is not None
        vectors = [vector for vector, _ in rows]
        usage = TokenUsage.of([len(row.input_ids) for _, row in rows], [row.truncated for _, row in rows])
        payload = success_body(request, vectors, context.model_name, usage)
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
