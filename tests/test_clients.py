"""The Python client, LangChain and Chroma adapters, and the official OpenAI SDK against a real server.

The server serves the real all-MiniLM-L6-v2 weights (the offline demo, instructions ignored)
under the name ``embeddings``, so OpenAI's SDK with ``base_url=<inference>/predictions`` reaches
it at ``/predictions/embeddings``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from unittest import mock

import pytest
import requests

from handler.settings import HandlerSettings
from instructor_client import (
    AuthorizationError,
    InstructorClient,
    InvalidRequestError,
    ServerUnavailableError,
)
from instructor_client.client import request_body
from tests.conftest import RunningServer, registered_model
from tests.scripted_http import DROP, Answer, scripted_server
from toolkit.build.archive import WorkerConfig, build_archive

DOCS = {
    "bread": "A beginner's guide to baking sourdough loaves in your own kitchen.",
    "rates": "The central bank raised interest rates by a quarter point on Wednesday.",
    "football": "The home team won the championship after a late goal in extra time.",
    "python": "Python lists keep insertion order and can hold values of any type.",
}
QUERY = "How do I bake bread at home?"


def fake_response(status: int, body: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


def test_chunks_respect_pair_and_byte_limits_in_order() -> None:
    client = InstructorClient(max_pairs_per_request=3, max_request_bytes=120)
    pairs = [("i", f"text {n}") for n in range(10)] + [("i", "x" * 60)]
    chunks = list(client.chunks(pairs))
    assert [pair for chunk in chunks for pair in chunk] == pairs
    assert all(len(chunk) <= 3 for chunk in chunks)
    assert all(len(request_body(chunk)) <= 120 for chunk in chunks)
    with pytest.raises(InvalidRequestError, match="over the 120-byte limit"):
        list(client.chunks([("i", "y" * 200)]))


@pytest.mark.parametrize("max_bytes", [115, 116, 140, 200])
def test_byte_limit_ends_each_chunk_and_bodies_sent_fit(max_bytes: int) -> None:
    """The pair limit is out of reach: every chunk ends because one more pair would overflow the body."""
    pairs = [("i", f"t{n}") for n in range(12)] + [("Represent:", f"text number {n} é") for n in range(6)]
    session = mock.Mock()
    session.post.side_effect = lambda url, data, **kwargs: fake_response(200, [[0.0]] * len(json.loads(data)["inputs"]))
    client = InstructorClient(max_pairs_per_request=128, max_request_bytes=max_bytes, session=session)
    chunks = list(client.chunks(pairs))
    assert len(chunks) > 1 and [pair for chunk in chunks for pair in chunk] == pairs
    for chunk, following in itertools.pairwise(chunks):
        assert len(request_body(chunk)) <= max_bytes < len(request_body([*chunk, following[0]]))
    assert len(client.embed(pairs)) == len(pairs)
    sent = [call.kwargs["data"] for call in session.post.call_args_list]
    assert sent == [request_body(chunk) for chunk in chunks]
    assert max(len(body) for body in sent) <= max_bytes


def test_retries_overload_then_succeeds() -> None:
    session = mock.Mock()
    session.post.side_effect = [fake_response(503, {"message": "busy"}), fake_response(200, [[1.0], [2.0]])]
    client = InstructorClient(token="k", backoff_s=0, session=session)
    assert client.embed([("", "a"), ("", "b")]) == [[1.0], [2.0]]
    assert session.post.call_count == 2
    assert session.post.call_args.kwargs["headers"]["Authorization"] == "Bearer k"


@pytest.mark.parametrize(
    ("response", "error", "retried"),
    [
        (fake_response(400, {"message": "inputs[0][1] (text) must be a string"}), InvalidRequestError, False),
        (
            fake_response(400, {"message": "Token Authorization failed. Token either incorrect"}),
            AuthorizationError,
            False,
        ),
        (fake_response(507, {"message": "out of memory"}), ServerUnavailableError, True),
        (fake_response(500, {"message": "the model failed"}), ServerUnavailableError, False),
    ],
)
def test_typed_errors_carry_the_server_message(response: requests.Response, error: type, retried: bool) -> None:
    session = mock.Mock()
    session.post.return_value = response
    with pytest.raises(error) as raised:
        InstructorClient(retries=2, backoff_s=0, session=session).embed([("", "a")])
    assert raised.value.message == response.json()["message"]
    assert session.post.call_count == (3 if retried else 1)


def test_retries_after_a_lost_connection() -> None:
    with scripted_server([DROP, Answer(200, b"[[1.0], [2.0]]")]) as fake:
        client = InstructorClient(fake.url, "m", token="k", backoff_s=0)
        assert client.embed([("", "a"), ("", "b")]) == [[1.0], [2.0]]
    assert [seen.path for seen in fake.seen] == ["/predictions/m"] * 2
    assert fake.seen[0].body == fake.seen[1].body == b'{"inputs": [["", "a"], ["", "b"]]}'


def test_connection_lost_on_every_attempt_is_server_unavailable() -> None:
    with scripted_server([DROP] * 3) as fake:
        client = InstructorClient(fake.url, "m", retries=2, backoff_s=0)
        with pytest.raises(ServerUnavailableError, match=f"no answer from {fake.url}/predictions/m") as raised:
            client.embed([("", "a")])
    assert raised.value.status == 0 and len(fake.seen) == 3


@pytest.mark.parametrize(
    ("answer", "error", "message", "attempts"),
    [
        (
            Answer(502, b"<html>502 Bad Gateway</html>\n", "text/html"),
            ServerUnavailableError,
            "<html>502 Bad Gateway</html>",
            1,
        ),
        (Answer(503, b"upstream overloaded", "text/plain"), ServerUnavailableError, "upstream overloaded", 3),
        (Answer(413, b"", "text/plain"), InvalidRequestError, HTTPStatus(413).phrase, 1),
        (
            Answer(200, b"<html>log in first</html>", "text/html"),
            ServerUnavailableError,
            "the answer is not JSON: '<html>log in first</html>'",
            1,
        ),
    ],
    ids=["proxy-502-html", "503-text-retried", "413-empty", "200-html"],
)
def test_non_json_answers_are_typed_errors(answer: Answer, error: type, message: str, attempts: int) -> None:
    """A proxy or load balancer in front of TorchServe answers in HTML or plain text."""
    with scripted_server([answer] * attempts) as fake, pytest.raises(error) as raised:
        InstructorClient(fake.url, "m", retries=2, backoff_s=0).embed([("", "a")])
    assert (raised.value.status, raised.value.message) == (answer.status, message)
    assert len(fake.seen) == attempts


def test_retries_back_off_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients refused together must not come back together: each sleep is random within its exponential bound."""
    slept: list[float] = []
    monkeypatch.setattr("instructor_client.client.time.sleep", slept.append)
    overloaded = Answer(503, b'{"code": 503, "message": "busy"}')
    with scripted_server([overloaded] * 4 + [Answer(200, b"[[0.5, 0.5]]")]) as fake:
        vectors = InstructorClient(fake.url, "m", retries=4, backoff_s=0.5).embed([("", "a")])
    assert vectors == [[0.5, 0.5]] and len(slept) == 4
    assert all(0 <= pause <= 0.5 * 2**attempt for attempt, pause in enumerate(slept))
    with scripted_server([overloaded] * 4 + [Answer(200, b"[[0.5, 0.5]]")]) as fake:
        InstructorClient(fake.url, "m", retries=4, backoff_s=0.5).embed([("", "a")])
    assert slept[:4] != slept[4:], "two clients slept the same times"


@pytest.fixture(scope="module")
def demo_server(torchserve: RunningServer, minilm_dir: Path) -> Iterator[RunningServer]:
    """The MiniLM demo registered as ``embeddings`` on the session's shared TorchServe."""
    ignore = HandlerSettings.from_mapping({"instruction_mode": "ignore"})
    build_archive(minilm_dir, torchserve.model_store, ignore, WorkerConfig(), name="embeddings")
    with registered_model(torchserve, "embeddings.mar", "embeddings") as running:
        yield running


@pytest.fixture
def client(demo_server: RunningServer) -> InstructorClient:
    return InstructorClient(demo_server.inference_url, "embeddings", key_file=demo_server.layout.key_file)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.integration
def test_client_splits_and_keeps_order(demo_server: RunningServer, client: InstructorClient) -> None:
    texts = [f"Sentence number {n} about {topic}." for n, topic in enumerate(["bread", "rates", "sport"] * 4)]
    whole = client.embed_texts(texts)
    small = InstructorClient(
        demo_server.inference_url, "embeddings", key_file=demo_server.layout.key_file, max_pairs_per_request=5
    )
    split = small.embed_texts(texts)
    assert len(split) == len(texts) == len(whole)
    assert all(max(abs(a - b) for a, b in zip(x, y, strict=True)) <= 1e-6 for x, y in zip(split, whole, strict=True))


@pytest.mark.integration
def test_client_without_token_is_refused(demo_server: RunningServer) -> None:
    with pytest.raises(AuthorizationError):
        InstructorClient(demo_server.inference_url, "embeddings").embed_texts(["x"])


@pytest.mark.integration
def test_langchain_embeddings_rank_the_relevant_document_first(client: InstructorClient) -> None:
    from instructor_client.langchain import InstructorEmbeddings

    embeddings = InstructorEmbeddings(client)
    vectors = dict(zip(DOCS, embeddings.embed_documents(list(DOCS.values())), strict=True))
    query = embeddings.embed_query(QUERY)
    assert max(vectors, key=lambda name: cosine(query, vectors[name])) == "bread"


@pytest.mark.integration
def test_chroma_collection_queries_through_the_server(client: InstructorClient) -> None:
    import chromadb
    from chromadb.config import Settings

    from instructor_client.chroma import InstructorEmbeddingFunction

    chroma = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
    collection = chroma.create_collection("instructor-docs", embedding_function=InstructorEmbeddingFunction(client))
    collection.add(ids=list(DOCS), documents=list(DOCS.values()))
    result = collection.query(query_texts=[QUERY], n_results=2)
    assert result["ids"][0][0] == "bread"


@pytest.mark.integration
@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_official_openai_client(demo_server: RunningServer, client: InstructorClient, encoding: str | None) -> None:
    """None: the SDK's default, which asks for base64 and decodes it itself."""
    import base64

    import numpy as np
    from openai import NOT_GIVEN, OpenAI

    openai = OpenAI(base_url=f"{demo_server.inference_url}/predictions", api_key=demo_server.keys().inference)
    texts = list(DOCS.values())
    response = openai.embeddings.create(
        model="embeddings",
        input=texts,
        encoding_format=encoding or NOT_GIVEN,
        extra_body={"instruction": "Represent:"},
    )
    expected = client.embed_texts(texts)
    assert [item.index for item in response.data] == list(range(len(texts)))
    for item, wanted in zip(response.data, expected, strict=True):
        vector = item.embedding
        if encoding == "base64":
            assert isinstance(vector, str)
            vector = np.frombuffer(base64.b64decode(vector), dtype="<f4").tolist()
        assert max(abs(a - b) for a, b in zip(vector, wanted, strict=True)) <= 1e-6
    assert response.usage.prompt_tokens > len(texts)


@pytest.mark.integration
def test_examples_run_against_the_server(demo_server: RunningServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    common = [
        "--url",
        demo_server.inference_url,
        "--model",
        "embeddings",
        "--key-file",
        str(demo_server.layout.key_file),
    ]
    ingest = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "ingest_and_query.py"),
            str(REPO_ROOT / "examples" / "docs"),
            "How do I bake bread?",
            "--persist-dir",
            str(tmp_path / "chroma"),
            *common,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert "6 paragraphs indexed" in ingest.stdout and "1. baking.txt#" in ingest.stdout
    ranking = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "instruction_ranking.py"), *common],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ranking.returncode == 0, ranking.stderr
    rows = [line for line in ranking.stdout.splitlines() if line.startswith("| none") or line.startswith("| query")]
    assert len(rows) == 2


def test_repository_installs_only_the_client(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import zipfile

    from tests.conftest import REPO_ROOT

    # Build from a copy of the repository, so the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT, source, ignore=shutil.ignore_patterns(".venv*", ".git", "models", "model_store", ".run", "build")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("instructor_client-*.whl")
    packages = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in packages if not name.endswith(".dist-info")} == {"instructor_client"}
