"""Golden vectors from the original ``INSTRUCTOR.encode``, run once in the legacy environment.

Usage (``make golden`` does both steps):

    .venv/bin/python scripts/make_tiny_model.py models/tiny
    .venv-legacy/bin/python scripts/make_golden_vectors.py models/tiny tests/golden/tiny_instructor.json

``.venv-legacy`` holds requirements-legacy.txt (sentence-transformers 2.2.2, transformers
4.44.2, InstructorEmbedding 1.0.1), the last stack on which ``INSTRUCTOR.encode`` runs as
published. The output records the model's fingerprint and the stack's versions; the test
``tests/test_golden.py`` compares the handler's encoder against it.
"""

import argparse
import importlib.metadata
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import _bootstrap  # noqa: F401  (repository root on sys.path)

from tests.cases import PARITY_CASES, fingerprint

# Recorded key -> the distribution whose installed version is read from its metadata.
RECORDED_DISTRIBUTIONS = {
    "InstructorEmbedding": "InstructorEmbedding",
    "sentence_transformers": "sentence-transformers",
    "transformers": "transformers",
    "torch": "torch",
}


def stack_versions() -> dict[str, str]:
    """The installed versions of the stack that computes the vectors, from package metadata.

    InstructorEmbedding has no ``__version__``, so a module attribute with a fallback would
    record the fallback whatever is installed; the distribution metadata never guesses.
    """
    versions = {key: importlib.metadata.version(dist) for key, dist in RECORDED_DISTRIBUTIONS.items()}
    return versions | {"python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()

    from InstructorEmbedding import INSTRUCTOR

    model = INSTRUCTOR(str(args.model_dir), device="cpu")
    vectors = {name: model.encode([list(pair) for pair in pairs]).tolist() for name, pairs in PARITY_CASES.items()}
    document = {
        "model_fingerprint": fingerprint(args.model_dir),
        "made_with": stack_versions(),
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": {name: {"pairs": PARITY_CASES[name], "vectors": vectors[name]} for name in PARITY_CASES},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(vectors)} cases to {args.output}")


if __name__ == "__main__":
    main()
