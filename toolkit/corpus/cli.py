"""``python -m toolkit embed CORPUS OUT``: embed a corpus file through the running server.

    python -m toolkit embed docs.jsonl vectors/ --instruction "Represent the document for retrieval: "
    python -m toolkit embed notes.txt vectors/ --chunk-tokens 200 --overlap 20 --chroma chroma/ --collection notes

Ctrl-C (or a crash) loses at most the shards in flight: run the same command again to go on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from instructor_client import InstructorClient, InstructorError
from toolkit import REPO_ROOT
from toolkit.corpus.job import EmbedJob, JobOptions, summary_line
from toolkit.corpus.reading import FORMATS, Columns, corpus_format
from toolkit.corpus.shards import OutputFolder
from toolkit.errors import reporting_errors
from toolkit.serve.management import DEFAULT_INFERENCE_URL, DEFAULT_MANAGEMENT_URL, ManagementClient


def parser() -> argparse.ArgumentParser:
    parsed = argparse.ArgumentParser(prog="toolkit embed", description=__doc__.split("\n\n")[0])
    parsed.add_argument("corpus", type=Path, help="JSONL, CSV, Parquet or a text file (one document a line)")
    parsed.add_argument("out", type=Path, help="output folder: shards/, errors.jsonl, manifest.json")
    parsed.add_argument("--format", choices=FORMATS, default=None, help="default: from the file's suffix")
    parsed.add_argument("--id-column", default="id", help="default: id (line or row numbers where absent)")
    parsed.add_argument("--text-column", default="text")
    parsed.add_argument("--instruction", default="", help="the instruction for every document")
    parsed.add_argument("--instruction-column", default=None, help="a per-document instruction (overrides)")
    parsed.add_argument("--chunk-tokens", type=int, default=None, help="split documents into chunks of N tokens")
    parsed.add_argument("--overlap", type=int, default=0, help="tokens shared by consecutive chunks")
    parsed.add_argument("--tokenizer", type=Path, default=None, help="count tokens with this model folder's tokenizer")
    parsed.add_argument("--no-truncate", action="store_true", help="refuse (errors.jsonl) rows over max_length")
    parsed.add_argument("--shard-rows", type=int, default=1024, help="rows per shard (the unit of resuming)")
    parsed.add_argument("--batch-pairs", type=int, default=32, help="rows per request")
    parsed.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parsed.add_argument(
        "--retries", type=int, default=8, help="per request, on 503/507 and lost connections (backoff up to ~1 min)"
    )
    parsed.add_argument("--restart", action="store_true", help="discard OUT's earlier vectors and start over")
    parsed.add_argument("--chroma", type=Path, default=None, help="also add the vectors to a Chroma folder")
    parsed.add_argument("--collection", default="corpus", help="the Chroma collection")
    parsed.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    parsed.add_argument("--url", default=DEFAULT_INFERENCE_URL)
    parsed.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL)
    parsed.add_argument("--name", default="instructor")
    parsed.add_argument("--key-file", type=Path, default=REPO_ROOT / "key_file.json")
    return parsed


def job_options(args: argparse.Namespace) -> JobOptions:
    return JobOptions(
        input=args.corpus,
        format=corpus_format(args.corpus, args.format),
        columns=Columns(args.id_column, args.text_column, args.instruction_column),
        instruction=args.instruction,
        max_tokens=args.chunk_tokens,
        overlap=args.overlap,
        tokenizer=args.tokenizer,
        shard_rows=args.shard_rows,
        batch_pairs=args.batch_pairs,
        truncate=not args.no_truncate,
    )


class Progress:
    """A tqdm bar (rows, rate, ETA), or a log line per shard with ``quiet``."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.total = total
        self.done = 0
        self.bar = None if quiet else tqdm(total=total, unit="row", dynamic_ncols=True)

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        else:
            print(f"{self.done}/{self.total} rows", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def add_to_chroma(out: Path, folder: Path, collection: str) -> int:
    """Upsert every shard's rows into a persistent Chroma collection (ids ``<id>#<chunk>``)."""
    import chromadb
    import pyarrow.parquet as pq
    from chromadb.config import Settings

    target = chromadb.PersistentClient(str(folder), Settings(anonymized_telemetry=False))
    chroma = target.get_or_create_collection(collection, metadata={"hnsw:space": "cosine"})
    added = 0
    for path in sorted((out / "shards").glob("part-*.parquet")):
        table = pq.read_table(path).to_pydict()
        if not table["id"]:
            continue
        chroma.upsert(
            ids=[f"{doc}#{chunk}" for doc, chunk in zip(table["id"], table["chunk"], strict=True)],
            embeddings=table["embedding"],
            documents=table["text"],
            metadatas=[
                {"id": doc, "chunk": chunk, "start": start, "end": end}
                for doc, chunk, start, end in zip(
                    table["id"], table["chunk"], table["start"], table["end"], strict=True
                )
            ],
        )
        added += len(table["id"])
    return added


def main(argv: Sequence[str] | None = None) -> int:
    """Embed a corpus file into Parquet shards (resumable), optionally into Chroma."""
    args = parser().parse_args(argv)

    def run() -> int:
        options = job_options(args)
        client = InstructorClient(
            args.url,
            args.name,
            key_file=args.key_file,
            management_url=args.management_url,
            truncate=options.truncate,
            retries=args.retries,
        )
        management = ManagementClient(args.key_file, args.management_url)
        job = EmbedJob(
            client,
            lambda: management.describe(args.name, customized=True)[0],
            OutputFolder(args.out),
            options,
            args.concurrency,
        )
        progress = Progress(sum(1 for _ in job.rows()), args.quiet)
        job.on_rows = progress
        try:
            manifest = job.run(restart=args.restart)
        except KeyboardInterrupt:
            done = len(list((args.out / "shards").glob("part-*.parquet")))
            print(f"\ninterrupted: {done} shards are written; run the same command again to go on", file=sys.stderr)
            return 130
        finally:
            progress.close()
        print(summary_line(manifest))
        if args.chroma is not None:
            print(
                f"{add_to_chroma(args.out, args.chroma, args.collection)} rows in Chroma collection {args.collection}"
            )
        return 0

    return reporting_errors(run, also=(InstructorError, ValueError))
