"""Read and check a BEIR-format folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Everything is checked before any text is embedded, and a problem is reported with the file and
line it is on. Documents are read as BEIR and MTEB feed them to a model: ``title + " " + text``,
stripped (the title left out when it is empty). As BEIR's loader does, only queries that have
judgments in the split are evaluated.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.evaluation.errors import DataError

LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


@dataclasses.dataclass(frozen=True)
class BeirDataset:
    """A checked BEIR split.

    Attributes:
        corpus_ids / corpus_texts: the documents, in file order, title and text joined.
        query_ids / query_texts: the judged queries, in ``queries.jsonl`` order.
        qrels: query id -> document id -> graded relevance (0 is judged not relevant).
        unjudged_queries: queries in ``queries.jsonl`` without a judgment in the split (skipped).
    """

    folder: Path
    split: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    unjudged_queries: int


def document_text(title: str, text: str) -> str:
    """BEIR's and MTEB's input for a document: ``(title + " " + text).strip()``."""
    return f"{title} {text}".strip() if title else text.strip()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; undecodable bytes name their line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(path, f"not UTF-8 text ({err.reason} at byte {err.start})", number) from None
            if line.strip():
                yield number, line


def _string_field(path: Path, number: int, record: dict[str, Any], field: str, required: bool) -> str:
    value = record.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and field == "_id" and not value.strip()):
        raise DataError(path, f"field {field!r} must be a non-empty string, got {value!r}", number)
    return value


def _read_jsonl(path: Path, kind: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Ids and (title, text) per line; duplicate ids, bad JSON and bad fields name their line."""
    if not path.is_file():
        raise DataError(path, f"missing: a BEIR folder holds {LAYOUT}")
    ids: list[str] = []
    fields: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"not valid JSON: {err.msg} (column {err.colno})", number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"each line must be a JSON object, got {type(record).__name__}", number)
        doc_id = _string_field(path, number, record, "_id", required=True)
        text = _string_field(path, number, record, "text", required=True)
        title = _string_field(path, number, record, "title", required=False)
        if not document_text(title, text):
            raise DataError(
                path, f"{doc_id!r} has no text: title and text are empty (the server embeds no empty text)", number
            )
        if doc_id in first_line:
            raise DataError(path, f"duplicate _id {doc_id!r} (first on line {first_line[doc_id]})", number)
        first_line[doc_id] = number
        ids.append(doc_id)
        fields.append((title, text))
    if not ids:
        raise DataError(path, f"no {kind}: the file is empty")
    return ids, fields


def _read_qrels(path: Path, query_ids: set[str], corpus_ids: set[str]) -> dict[str, dict[str, int]]:
    """``query-id <TAB> corpus-id <TAB> score`` rows (a header row is allowed first)."""
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        raise DataError(path, f"missing (qrels found: {available or 'none'}); a BEIR folder holds {LAYOUT}")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _lines(path):
        row = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))
        if number == 1 and row[:1] == ["query-id"]:
            continue
        if len(row) != 3:
            raise DataError(
                path, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(row)}", number
            )
        query_id, doc_id, score = row
        try:
            relevance = int(score)
        except ValueError:
            raise DataError(path, f"score must be an integer, got {score!r}", number) from None
        if query_id not in query_ids:
            raise DataError(path, f"query {query_id!r} is not in queries.jsonl", number)
        if doc_id not in corpus_ids:
            raise DataError(path, f"document {doc_id!r} is not in corpus.jsonl", number)
        qrels.setdefault(query_id, {})[doc_id] = relevance
    if not qrels:
        raise DataError(path, "no judgments: the file is empty")
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Read and check one split of a BEIR-format folder.

    Raises:
        DataError: a file is missing, a line is malformed, an id repeats, a judgment names an
            unknown query or document, or a file has no records.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, f"not a folder; a BEIR folder holds {LAYOUT} (or fetch one with --download TASK)")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        _read_qrels(qrels_path, set(), set())  # raises with what is there instead
    corpus_ids, corpus_fields = _read_jsonl(folder / "corpus.jsonl", "documents")
    query_ids, query_fields = _read_jsonl(folder / "queries.jsonl", "queries")
    qrels = _read_qrels(qrels_path, set(query_ids), set(corpus_ids))
    judged = [
        (query_id, text) for query_id, (_, text) in zip(query_ids, query_fields, strict=True) if query_id in qrels
    ]
    return BeirDataset(
        folder=folder,
        split=split,
        corpus_ids=corpus_ids,
        corpus_texts=[document_text(title, text) for title, text in corpus_fields],
        query_ids=[query_id for query_id, _ in judged],
        query_texts=[text for _, text in judged],
        qrels=qrels,
        unjudged_queries=len(query_ids) - len(judged),
    )
