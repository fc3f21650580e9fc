"""Documents from a corpus file: JSONL, CSV, Parquet or plain text (one document a line).

Each document has an id (its id column, or its line/row number when the file has none), a text
and, optionally, its own instruction (an instruction column). Values are passed on as read: a
text that is not a string reaches the server, which refuses it with a message naming the problem.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

FORMATS = ("jsonl", "csv", "parquet", "txt")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "txt"}


class CorpusError(ToolkitError):
    """The corpus file cannot be read as asked; the message names the file, line or column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which fields hold the id, the text and (optionally) a per-document instruction."""

    id: str | None = "id"
    text: str = "text"
    instruction: str | None = None


@dataclasses.dataclass(frozen=True)
class Document:
    """One document: ``text`` may be any value read (only strings are valid for the server)."""

    id: str
    text: Any
    instruction: str | None = None


def corpus_format(path: Path, given: str | None = None) -> str:
    """The format named, or the one the file's suffix says."""
    if given:
        return given
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise CorpusError(f"{path}: cannot tell the format from {path.suffix!r}; pass --format {FORMATS}") from None


def _document(record: dict[str, Any], number: int, columns: Columns, where: str) -> Document:
    if columns.text not in record:
        raise CorpusError(f"{where}: no {columns.text!r} field (the text column; set it with --text-column)")
    raw_id = record.get(columns.id) if columns.id else None
    instruction = record.get(columns.instruction) if columns.instruction else None
    return Document(str(number) if raw_id is None else str(raw_id), record[columns.text], instruction)


def _jsonl(path: Path, columns: Columns) -> Iterator[Document]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{path}:{number + 1}: not JSON ({err})") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{path}:{number + 1}: a JSON object per line expected")
            yield _document(record, number, columns, f"{path}:{number + 1}")


def _csv(path: Path, columns: Columns) -> Iterator[Document]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, record in enumerate(csv.DictReader(handle)):
            yield _document(record, number, columns, f"{path} row {number + 1}")


def _parquet(path: Path, columns: Columns) -> Iterator[Document]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    wanted = [name for name in (columns.id, columns.text, columns.instruction) if name in table.schema_arrow.names]
    number = 0
    for batch in table.iter_batches(columns=wanted, batch_size=4096):
        for record in batch.to_pylist():
            yield _document(record, number, columns, f"{path} row {number + 1}")
            number += 1


def _txt(path: Path, columns: Columns) -> Iterator[Document]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            yield Document(str(number), line.rstrip("\n"))


READERS = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "txt": _txt}


def read_documents(path: Path, format_name: str, columns: Columns) -> Iterator[Document]:
    """The documents of ``path`` in file order."""
    if not path.is_file():
        raise CorpusError(f"{path} is not a file")
    return READERS[format_name](path, columns)
