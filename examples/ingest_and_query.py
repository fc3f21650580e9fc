"""Ingest a folder of .txt files into Chroma through the embedding server, then query it.

    .venv/bin/python examples/ingest_and_query.py examples/docs "How do I bake bread?" \\
        --key-file key_file.json --persist-dir .run/chroma

Each paragraph of each file becomes one document, embedded with the document instruction;
the query is embedded with the query instruction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import chromadb
from chromadb.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from instructor_client import InstructorClient
from instructor_client.chroma import InstructorEmbeddingFunction


def paragraphs(folder: Path) -> dict[str, str]:
    """``file#n`` -> paragraph text, for every non-empty paragraph of every .txt file."""
    documents = {}
    for path in sorted(folder.glob("*.txt")):
        chunks = [chunk.strip() for chunk in path.read_text(encoding="utf-8").split("\n\n")]
        for number, chunk in enumerate(chunk for chunk in chunks if chunk):
            documents[f"{path.name}#{number}"] = chunk
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("query")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="instructor")
    parser.add_argument("--key-file", default="key_file.json")
    parser.add_argument("--persist-dir", default=None, help="keep the collection on disk (default: in memory)")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()

    client = InstructorClient(args.url, args.model, key_file=args.key_file)
    settings = Settings(anonymized_telemetry=False)
    chroma = (
        chromadb.PersistentClient(args.persist_dir, settings=settings)
        if args.persist_dir
        else chromadb.EphemeralClient(settings=settings)
    )
    collection = chroma.get_or_create_collection("documents", embedding_function=InstructorEmbeddingFunction(client))
    documents = paragraphs(args.folder)
    collection.upsert(ids=list(documents), documents=list(documents.values()))
    result = collection.query(query_texts=[args.query], n_results=min(args.top, len(documents)))
    print(f"{len(documents)} paragraphs indexed; top matches for {args.query!r}:")
    for rank, (doc_id, distance) in enumerate(zip(result["ids"][0], result["distances"][0], strict=True), 1):
        print(f"{rank}. {doc_id} (cosine distance {distance:.3f}): {documents[doc_id][:80]}")


if __name__ == "__main__":
    main()
