"""The output folder of an embedding job: Parquet shards, their error files and the manifest.

    OUT/manifest.json          the model's fingerprint, the job's input and options, the counts
    OUT/shards/part-NNNNN.parquet   id, chunk, start, end, text, instruction, embedding (float32 x dim)
    OUT/errors/part-NNNNN.jsonl     the rows of that shard the server refused: id, chunk, status, message
    OUT/errors.jsonl           every refused row, gathered from errors/ at the end of a run

A shard and its error file are written to a temporary name and renamed, errors first: a shard file
that exists is complete, so a re-run skips it and embeds nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.corpus.splitting import Chunk


@dataclasses.dataclass(frozen=True)
class RefusedRow:
    """A row the server refused, with its answer."""

    id: str
    chunk: int
    status: int
    message: str


def _atomic_write(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    write(temporary)
    os.replace(temporary, path)


class OutputFolder:
    """Where one job's shards, errors and manifest live."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_path = root / "manifest.json"
        self.shards = root / "shards"
        self.errors = root / "errors"

    def prepare(self) -> None:
        self.shards.mkdir(parents=True, exist_ok=True)
        self.errors.mkdir(parents=True, exist_ok=True)

    def shard_path(self, index: int) -> Path:
        return self.shards / f"part-{index:05d}.parquet"

    def errors_path(self, index: int) -> Path:
        return self.errors / f"part-{index:05d}.jsonl"

    def done(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def read_manifest(self) -> dict[str, Any] | None:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write(self.manifest_path, lambda path: path.write_text(json.dumps(manifest, indent=2) + "\n"))

    def write_shard(
        self,
        index: int,
        rows: Sequence[Chunk],
        vectors: Sequence[list[float]],
        refused: Sequence[RefusedRow],
        dimensions: int,
    ) -> None:
        """The shard's vectors and refused rows; the shard file last (its existence marks it done)."""
        lines = "".join(json.dumps(dataclasses.asdict(row)) + "\n" for row in refused)
        _atomic_write(self.errors_path(index), lambda path: path.write_text(lines))
        _atomic_write(self.shard_path(index), lambda path: write_parquet(path, rows, vectors, dimensions))

    def gather_errors(self) -> int:
        """Write errors.jsonl from every shard's error file; returns the number of refused rows."""
        lines = [line for path in sorted(self.errors.glob("part-*.jsonl")) for line in path.read_text().splitlines()]
        _atomic_write(self.root / "errors.jsonl", lambda path: path.write_text("".join(f"{line}\n" for line in lines)))
        return len(lines)

    def clear(self) -> None:
        """Remove what an earlier job wrote (``--restart``)."""
        for folder in (self.shards, self.errors):
            for path in folder.glob("*"):
                path.unlink()
        for path in (self.manifest_path, self.root / "errors.jsonl"):
            path.unlink(missing_ok=True)


def write_parquet(path: Path, rows: Sequence[Chunk], vectors: Sequence[list[float]], dimensions: int) -> None:
    """One shard: one row per embedded chunk; the vector as a fixed-size list of ``dimensions`` float32."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.asarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "id": pa.array([row.id for row in rows], pa.string()),
            "chunk": pa.array([row.chunk for row in rows], pa.int32()),
            "start": pa.array([row.start for row in rows], pa.int64()),
            "end": pa.array([row.end for row in rows], pa.int64()),
            "text": pa.array([row.text for row in rows], pa.string()),
            "instruction": pa.array([row.instruction for row in rows], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dimensions),
        }
    )
    pq.write_table(table, path)


def read_vectors(root: Path) -> Any:
    """Every shard of ``root`` as one pyarrow table, in shard order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(path) for path in sorted((root / "shards").glob("part-*.parquet"))]
    return pa.concat_tables(tables) if tables else None
