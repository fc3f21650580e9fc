"""One embedding job: the corpus's rows in shards, each embedded through the server and written once.

Rows are the chunks of the documents in file order; shard ``k`` holds rows ``k*S .. k*S+S-1``, so
a re-run of the same input and options finds the same shards and skips those already written.
Each shard is sent as requests of ``batch_pairs`` rows, ``concurrency`` at a time. A request the
server refuses (4xx) is halved until each refused row stands alone: the good rows of a request
with a bad one are all embedded, and each bad row is kept with the server's own message. A
token-budget 413 is split by the client itself (:meth:`InstructorClient.embed_chunk`).

The model's fingerprint (describe: name, version, handler settings, dimensions) is recorded in the
manifest; a re-run against another fingerprint is refused unless it starts over, and a model
switched while the job runs stops it before a shard of mixed vectors is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from instructor_client import InstructorClient, InvalidRequestError
from toolkit.corpus.reading import Columns, read_documents
from toolkit.corpus.shards import OutputFolder, RefusedRow
from toolkit.corpus.splitting import Chunk, Splitter
from toolkit.errors import ToolkitError

PROBE_PAIR = ("", "dimension probe")


class JobError(ToolkitError):
    """The job cannot start or go on (another model, another input); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What defines a job's rows and requests; all of it is recorded and must match to resume."""

    input: Path
    format: str
    columns: Columns = dataclasses.field(default_factory=Columns)
    instruction: str = ""
    max_tokens: int | None = None
    overlap: int = 0
    tokenizer: Path | None = None
    shard_rows: int = 1024
    batch_pairs: int = 32
    truncate: bool = True

    def recorded(self) -> dict[str, Any]:
        """The options as the manifest keeps them (with the input's size and digest)."""
        values = dataclasses.asdict(self)
        values["input"] = str(self.input.resolve())
        values["tokenizer"] = str(self.tokenizer) if self.tokenizer else None
        values["columns"] = dataclasses.asdict(self.columns)
        values.pop("batch_pairs")  # how rows are sent does not change what they are
        return values | {"input_bytes": self.input.stat().st_size, "input_sha256": file_digest(self.input)}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(description: dict[str, Any], dimensions: int) -> dict[str, Any]:
    """What identifies the vectors' model: name, version, handler settings, dimensions."""
    handler = (description.get("customizedMetadata") or {}).get("handler", {})
    return {
        "name": description.get("modelName"),
        "version": description.get("modelVersion"),
        "precision": handler.get("precision"),
        "engine": handler.get("engine"),
        "instruction_mode": handler.get("instruction_mode"),
        "max_length": handler.get("max_length"),
        "dimensions": dimensions,
    }


def shards_of(rows: Iterable[Chunk], size: int) -> Iterator[list[Chunk]]:
    iterator = iter(rows)
    while shard := list(itertools.islice(iterator, size)):
        yield shard


class EmbedJob:
    """Embeds ``options.input`` into ``out`` through ``client``; ``describe`` answers the served model's description."""

    def __init__(
        self,
        client: InstructorClient,
        describe: Callable[[], dict[str, Any]],
        out: OutputFolder,
        options: JobOptions,
        concurrency: int = 4,
        on_rows: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.client = client
        self.describe = describe
        self.out = out
        self.options = options
        self.concurrency = concurrency
        self.on_rows = on_rows
        self.rows_seen = 0

    def rows(self) -> Iterator[Chunk]:
        """Every row of the corpus, in order."""
        options = self.options
        splitter = Splitter(options.max_tokens, options.overlap)
        if options.tokenizer is not None and options.max_tokens is not None:
            from toolkit.corpus.splitting import tokenizer_spans

            splitter = dataclasses.replace(splitter, spans=tokenizer_spans(options.tokenizer))
        for document in read_documents(options.input, options.format, options.columns):
            if document.instruction is None and options.instruction:
                document = dataclasses.replace(document, instruction=options.instruction)
            yield from splitter.split(document)

    def fingerprint(self) -> dict[str, Any]:
        dimensions = len(self.client.embed_chunk([PROBE_PAIR])[0])
        return model_fingerprint(self.describe(), dimensions)

    def start(self, restart: bool) -> dict[str, Any]:
        """The manifest this run works under: a new one, or the earlier run's when it matches."""
        self.out.prepare()
        fingerprint, recorded = self.fingerprint(), self.options.recorded()
        earlier = self.out.read_manifest()
        if earlier is not None and not restart:
            if earlier["model"] != fingerprint:
                raise JobError(
                    f"{self.out.root} holds vectors of {earlier['model']}, the server now serves {fingerprint}: "
                    "pass --restart to embed everything again with the served model"
                )
            if earlier["options"] != recorded:
                raise JobError(
                    f"{self.out.root} was written from other input or options ({earlier['options']}): "
                    "pass --restart to start over, or another output folder"
                )
            return earlier
        if restart:
            self.out.clear()
            self.out.prepare()
        manifest = {"model": fingerprint, "options": recorded, "counts": {}, "seconds": 0.0, "complete": False}
        self.out.write_manifest(manifest)
        return manifest

    def run(self, restart: bool = False) -> dict[str, Any]:
        """Embed every shard not written yet; returns the final manifest."""
        manifest = self.start(restart)
        started = time.monotonic()
        dimensions = manifest["model"]["dimensions"]
        for index, shard in enumerate(shards_of(self.rows(), self.options.shard_rows)):
            self.rows_seen += len(shard)
            if self.out.done(index):
                self.on_rows(len(shard))
                continue
            kept, vectors, refused = self.embed_shard(shard)
            if model_fingerprint(self.describe(), dimensions) != manifest["model"]:
                raise JobError(
                    f"the served model changed while shard {index} was embedded; shards 0-{index - 1} hold "
                    f"{manifest['model']}: pass --restart to embed everything with the new one"
                )
            self.out.write_shard(index, kept, vectors, refused, dimensions)
            self.on_rows(len(shard))
        manifest["counts"] = self.totals()
        manifest["seconds"] = round(manifest.get("seconds", 0.0) + time.monotonic() - started, 2)
        manifest["complete"] = True
        self.out.write_manifest(manifest)
        return manifest

    def totals(self) -> dict[str, int]:
        """Rows, vectors and refused rows over every shard written (this run's and earlier ones')."""
        refused = self.out.gather_errors()
        return {"rows": self.rows_seen, "embedded": self.rows_seen - refused, "refused": refused}

    def embed_shard(self, shard: Sequence[Chunk]) -> tuple[list[Chunk], list[list[float]], list[RefusedRow]]:
        """The shard's embedded rows and vectors (in order) and its refused rows."""
        size = self.options.batch_pairs
        batches = [list(shard[start : start + size]) for start in range(0, len(shard), size)]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed-job") as pool:
            answers = list(pool.map(self.embed_rows, batches))
        kept = [row for answer in answers for row, _ in answer[0]]
        vectors = [vector for answer in answers for _, vector in answer[0]]
        refused = [row for answer in answers for row in answer[1]]
        return kept, vectors, refused

    def embed_rows(self, rows: list[Chunk]) -> tuple[list[tuple[Chunk, list[float]]], list[RefusedRow]]:
        """``rows`` embedded; a refused request is halved until the refused rows stand alone."""
        try:
            vectors = self.client.embed_chunk([pair_of(row) for row in rows])
        except InvalidRequestError as err:
            if len(rows) == 1:
                (row,) = rows
                return [], [RefusedRow(row.id, row.chunk, err.status, err.message)]
            middle = len(rows) // 2
            first, second = self.embed_rows(rows[:middle]), self.embed_rows(rows[middle:])
            return first[0] + second[0], first[1] + second[1]
        return list(zip(rows, vectors, strict=True)), []


def pair_of(row: Chunk) -> tuple[str, Any]:
    return (row.instruction or "", row.text)


def summary_line(manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    return (
        f"{counts['embedded']} of {counts['rows']} rows embedded, {counts['refused']} refused (errors.jsonl); "
        f"model {json.dumps(manifest['model'])}"
    )
