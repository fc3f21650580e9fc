"""Unit tests of the client's long-run behaviour against a fake server with TorchServe's key rules.

The fake keeps TorchServe 0.12's token semantics (``TokenAuthorization.java``): one inference key
at a time, ``POST /token?type=inference`` with the API key replaces it (the old key fails at once),
rewrites the key file in place and answers with no key. It also plays the worker's token budget:
a request of more than ``budget_pairs`` pairs is refused with the handler's 413 body. The real
server's expiry is tested in tests/test_long_runs.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from instructor_client import AuthorizationError, InstructorClient, TokenBudgetExceededError
from instructor_client.keys import KeyFile

TOKEN_FAILURE = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
}


class FakeTorchServe:
    """Inference and token endpoints on one loopback port; vectors are ``[len(text), index]``."""

    def __init__(self, key_file: Path, budget_pairs: int = 1000, delay_s: float = 0.0) -> None:
        self.key_file = key_file
        self.budget_pairs = budget_pairs
        self.delay_s = delay_s
        self.api_key = "api-key"
        self.inference_key = "key-0"
        self.renewals = 0
        self.bodies: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.write_key_file()

    def write_key_file(self) -> None:
        document = {"management": {"key": "m"}, "inference": {"key": self.inference_key}, "API": {"key": self.api_key}}
        self.key_file.write_text(json.dumps(document))

    def expire(self) -> None:
        """The key's time is up: the server refuses it, the file still holds it (as TorchServe does)."""
        with self.lock:
            self.inference_key = f"expired-{self.inference_key}"

    def answer(self, path: str, authorization: str, body: bytes) -> tuple[int, object]:
        url = urlparse(path)
        if url.path == "/token":
            if authorization != f"Bearer {self.api_key}" or parse_qs(url.query).get("type") != ["inference"]:
                return 400, TOKEN_FAILURE
            with self.lock:
                self.renewals += 1
                self.inference_key = f"key-{self.renewals}"
                self.write_key_file()
            return 200, None
        if authorization != f"Bearer {self.inference_key}":
            return 400, TOKEN_FAILURE
        request = json.loads(body)
        with self.lock:
            self.bodies.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay_s)
            pairs = request["inputs"]
            if len(pairs) > self.budget_pairs:
                refusal = {"code": 413, "type": "TokenBudgetError", "message": "over the budget"}
                return 413, refusal | {"max_pairs": self.budget_pairs}
            return 200, [[float(len(text)), float(index)] for index, (_, text) in enumerate(pairs)]
        finally:
            with self.lock:
                self.in_flight -= 1


@contextlib.contextmanager
def fake_torchserve(tmp_path: Path, **options: object) -> Iterator[tuple[FakeTorchServe, str]]:
    fake = FakeTorchServe(tmp_path / "key_file.json", **options)  # type: ignore[arg-type]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = fake.answer(self.path, self.headers.get("Authorization", ""), body)
            data = b"\n" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def texts(count: int) -> list[str]:
    return ["x" * (1 + n % 7) for n in range(count)]


def test_an_expired_key_is_renewed_written_back_and_the_request_retried(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file, management_url=url, backoff_s=0)
        assert client.embed_texts(["ab"]) == [[2.0, 0.0]]
        fake.expire()
        assert client.embed_texts(["abc"]) == [[3.0, 0.0]]
    assert fake.renewals == 1 and client.keys is not None and client.keys.renewals == 1
    assert json.loads(fake.key_file.read_text())["inference"]["key"] == "key-1"


def test_a_key_renewed_by_another_client_is_picked_up_without_renewing(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        first = InstructorClient(url, "m", key_file=fake.key_file, management_url=url)
        second = InstructorClient(url, "m", key_file=fake.key_file, management_url=url)
        first.embed_texts(["a"])
        second.embed_texts(["a"])
        fake.expire()
        first.embed_texts(["b"])  # renews
        second.embed_texts(["b"])  # its key of before is refused once: it reads the file, no renewal
    assert fake.renewals == 1


def test_clients_refused_together_renew_once(tmp_path: Path) -> None:
    """Each renewal kills the key the others just read: refused threads and processes renew one at a time."""
    with fake_torchserve(tmp_path, delay_s=0.01) as (fake, url):
        clients = [InstructorClient(url, "m", key_file=fake.key_file, management_url=url) for _ in range(6)]
        fake.expire()
        results: list[object] = []
        threads = [threading.Thread(target=lambda c=c: results.append(c.embed_texts(["abcd"]))) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [[[4.0, 0.0]]] * 6
    assert fake.renewals == 1


def test_without_a_management_url_a_refused_key_is_an_authorization_error(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file, management_url=None)
        fake.expire()
        with pytest.raises(AuthorizationError, match="no management URL"):
            client.embed_texts(["a"])
    assert fake.renewals == 0


def test_a_refused_renewal_says_so(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        fake.api_key = "another-api-key"  # the file's API key is no longer the server's
        client = InstructorClient(url, "m", key_file=fake.key_file, management_url=url)
        fake.expire()
        with pytest.raises(AuthorizationError, match=r"renewing the inference key: .*Token Authorization failed"):
            client.embed_texts(["a"])


def test_a_plain_token_is_never_renewed(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        client = InstructorClient(url, "m", token="key-0", management_url=url)
        fake.expire()
        with pytest.raises(AuthorizationError, match="Token Authorization failed"):
            client.embed_texts(["a"])
    assert fake.renewals == 0


def test_key_file_reads_through_a_rewrite_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "key_file.json"
    path.write_text("")  # TorchServe truncated the file and has not written it yet
    keys = KeyFile(path)

    def finish_writing() -> None:
        time.sleep(0.2)
        path.write_text(json.dumps({"inference": {"key": "fresh"}, "API": {"key": "a"}}))

    writer = threading.Thread(target=finish_writing)
    writer.start()
    assert keys.inference_key() == "fresh"
    writer.join()


def test_a_token_budget_refusal_is_split_by_its_max_pairs_and_order_kept(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path, budget_pairs=3) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file, max_pairs_per_request=8)
        inputs = texts(20)
        vectors = client.embed_texts(inputs)
    assert [vector[0] for vector in vectors] == [float(len(text)) for text in inputs]
    sizes = [len(body["inputs"]) for body in fake.bodies]
    refused = [size for size in sizes if size > 3]
    assert refused == [8, 8, 4]  # the client's own chunks of 8, each refused once, then split
    assert sum(size for size in sizes if size <= 3) == 20


def test_a_single_pair_over_the_budget_stays_an_error(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path, budget_pairs=0) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file)
        with pytest.raises(TokenBudgetExceededError) as raised:
            client.embed_texts(["a"])
    assert raised.value.status == 413 and len(fake.bodies) == 1


def test_concurrent_requests_keep_input_order(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path, delay_s=0.05) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file, max_pairs_per_request=4, concurrency=4)
        inputs = texts(64)
        vectors = client.embed_texts(inputs)
    assert [vector[0] for vector in vectors] == [float(len(text)) for text in inputs]
    assert [vector[1] for vector in vectors] == [float(n % 4) for n in range(64)]
    assert fake.most_in_flight == 4 and len(fake.bodies) == 16


def test_truncate_false_is_sent_and_counted_in_the_byte_limit(tmp_path: Path) -> None:
    with fake_torchserve(tmp_path) as (fake, url):
        client = InstructorClient(url, "m", key_file=fake.key_file, truncate=False, max_request_bytes=80)
        client.embed_texts(texts(10))
    assert all(body["truncate"] is False for body in fake.bodies)
    assert all(len(json.dumps(body)) <= 80 for body in fake.bodies)
