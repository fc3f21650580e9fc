"""Does giving queries and documents their own instructions improve ranking? A small labelled check.

    .venv/bin/python examples/instruction_ranking.py --key-file key_file.json

Ranks the documents for each labelled query twice: with no instructions, and with INSTRUCTOR's
retrieval instructions (one for questions, one for documents), and prints accuracy@1 and MRR.
With an INSTRUCTOR model (MODEL=hkunlp/instructor-large) the instructions are used; with the
offline demo (all-MiniLM-L6-v2, instructions ignored) both rows are the same by design.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructor_client import InstructorClient

DOCUMENTS = {
    "bread": "Sourdough bread needs a lively starter, flour, water and salt; bake it in a hot Dutch oven.",
    "rates": "The central bank raised its policy rate by a quarter point to slow inflation.",
    "football": "The home team won the championship after a late goal in extra time.",
    "python": "Python lists keep insertion order and can hold values of any type.",
    "vaccine": "Vaccines train the immune system to recognise a pathogen without causing the disease.",
    "volcano": "Magma rising through the crust erupts as lava, ash and gas from a volcano.",
}
QUERIES = {
    "How do I make sourdough at home?": "bread",
    "Why did borrowing costs go up?": "rates",
    "Who won the final?": "football",
    "Does a Python list remember the order of its items?": "python",
    "How do vaccines protect people?": "vaccine",
    "What comes out of a volcano when it erupts?": "volcano",
}
QUERY_INSTRUCTION = "Represent the question for retrieving supporting documents: "
DOCUMENT_INSTRUCTION = "Represent the document for retrieval: "


def score(client: InstructorClient, query_instruction: str, document_instruction: str) -> tuple[float, float]:
    """(accuracy@1, mean reciprocal rank) over the labelled queries."""
    names = list(DOCUMENTS)
    documents = client.embed_texts([DOCUMENTS[name] for name in names], document_instruction)
    queries = client.embed_texts(list(QUERIES), query_instruction)
    hits, reciprocal = 0, 0.0
    for query_vector, wanted in zip(queries, QUERIES.values(), strict=True):
        scores = [sum(q * d for q, d in zip(query_vector, doc, strict=True)) for doc in documents]
        ranking = [names[i] for i in sorted(range(len(names)), key=lambda i: -scores[i])]
        hits += ranking[0] == wanted
        reciprocal += 1 / (ranking.index(wanted) + 1)
    return hits / len(QUERIES), reciprocal / len(QUERIES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="instructor")
    parser.add_argument("--key-file", default="key_file.json")
    args = parser.parse_args()
    client = InstructorClient(args.url, args.model, key_file=args.key_file)
    print("| instructions | accuracy@1 | MRR |\n|---|---|---|")
    for label, query_instruction, document_instruction in (
        ("none", "", ""),
        ("query + document", QUERY_INSTRUCTION, DOCUMENT_INSTRUCTION),
    ):
        accuracy, mrr = score(client, query_instruction, document_instruction)
        print(f"| {label} | {accuracy:.2f} | {mrr:.3f} |")


if __name__ == "__main__":
    main()
