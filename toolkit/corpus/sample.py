"""``python -m toolkit sample-corpus OUT.jsonl``: a corpus to try ``make embed`` on, of any size, offline.

Rows are ``{"id": "doc-N", "title": ..., "text": ...}``, varied sentences of 12-40 words.
``--bad-every K`` makes every K-th row one the server refuses, in turn: an empty text, a number
instead of a text, a text far over the model's max_length (refused when embedded with ``--no-truncate``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

WORDS = (
    *("the", "bank", "raised", "rates", "while", "the", "team", "won", "a", "late", "goal", "and"),
    *("bread", "rose", "in", "a", "warm", "kitchen", "as", "stars", "fuse", "hydrogen", "into", "helium"),
)
BAD_VALUES: tuple[object, ...] = ("", 12345, " ".join(["word"] * 600))


def sample_texts(count: int) -> list[str]:
    """``count`` varied sentences of 12-40 words, each ending with its number."""
    return [" ".join(WORDS[(n + k) % len(WORDS)] for k in range(12 + n % 29)) + f" ({n})." for n in range(count)]


def sample_rows(count: int, bad_every: int = 0) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n, text in enumerate(sample_texts(count)):
        value: object = text
        if bad_every and n % bad_every == bad_every - 1:
            value = BAD_VALUES[(n // bad_every) % len(BAD_VALUES)]
        rows.append({"id": f"doc-{n}", "title": f"Note {n}", "text": value})
    return rows


def write_sample_corpus(path: Path, count: int, bad_every: int = 0) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in sample_rows(count, bad_every)))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write a sample corpus (JSONL) for make embed."""
    parser = argparse.ArgumentParser(prog="toolkit sample-corpus", description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--bad-every", type=int, default=0, help="every K-th row is one the server refuses")
    args = parser.parse_args(argv)
    write_sample_corpus(args.out, args.rows, args.bad_every)
    print(f"{args.rows} rows written to {args.out}")
    return 0
