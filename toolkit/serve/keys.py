"""``python -m toolkit key``: a fresh inference key for clients that hold a key, not the key file.

Renewing replaces the key at once (TorchServe keeps one key of each kind): a client still holding
the previous one is refused until it takes the new one. Clients given the key file
(``InstructorClient(key_file=...)``) do that by themselves; others need the printed key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit import REPO_ROOT
from toolkit.errors import reporting_errors
from toolkit.serve.management import DEFAULT_MANAGEMENT_URL, TokenKeys, TokenSession, key_expiry


def main(argv: Sequence[str] | None = None) -> int:
    """Renew a key of the running TorchServe and print it (stdout); its expiry goes to stderr."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--kind", choices=("inference", "management"), default="inference")
    parser.add_argument("--current", action="store_true", help="print the key in force without renewing it")
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL)
    parser.add_argument("--key-file", type=Path, default=REPO_ROOT / "key_file.json", help="TorchServe's key_file.json")
    args = parser.parse_args(argv)

    def run() -> int:
        if not args.current:
            TokenSession(args.key_file, args.kind, args.management_url).renew()
        print(getattr(TokenKeys.read(args.key_file), args.kind))
        print(f"{args.kind} key expires at {key_expiry(args.key_file, args.kind)}", file=sys.stderr)
        return 0

    return reporting_errors(run)
