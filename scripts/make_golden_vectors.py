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
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import _bootstrap  # noqa: F401  (repository root on sys.path)

from tests.cases import PARITY_CASES, fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()

    import InstructorEmbedding
    import sentence_transformers
    import torch
    import transformers
    from InstructorEmbedding import INSTRUCTOR

    model = INSTRUCTOR(str(args.model_dir), device="cpu")
    vectors = {name: model.encode([list(pair) for pair in pairs]).tolist() for name, pairs in PARITY_CASES.items()}
    document = {
        "model_fingerprint": fingerprint(args.model_dir),
        "made_with": {
            "InstructorEmbedding": getattr(InstructorEmbedding, "__version__", "1.0.1"),
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": {name: {"pairs": PARITY_CASES[name], "vectors": vectors[name]} for name in PARITY_CASES},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(vectors)} cases to {args.output}")


if __name__ == "__main__":
    main()
