"""The whole cycle against a real TorchServe: register, predict, batch, scale, unregister.

The server runs the repo's own config.properties (token authorization on, loopback only) on
free ports, with the tiny INSTRUCTOR archive (batch_size 4, max_batch_delay 400 ms).
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from handler.encoder import InstructorEncoder
from tests.cases import SCIENCE, TEXT, WIKI
from tests.conftest import RunningServer
from toolkit import server
from toolkit.management import ManagementError

pytestmark = pytest.mark.integration

TOLERANCE = 1e-5
NAME = "instructor"


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    assert max(abs(a - b) for a, b in zip(actual, expected, strict=True)) <= TOLERANCE


@pytest.fixture(scope="module")
def registered(torchserve: RunningServer) -> RunningServer:
    """The tiny archive registered with one capped worker."""
    result = torchserve.management.register(f"{NAME}.mar", initial_workers=1)
    assert "registered" in result["status"]
    return torchserve


def test_register_caps_workers_from_archive_config(registered: RunningServer) -> None:
    (description,) = registered.management.describe(NAME)
    assert description["minWorkers"] == 1 and description["maxWorkers"] == 1
    assert description["batchSize"] == 4 and description["maxBatchDelay"] == 400
    assert [worker["status"] for worker in description["workers"]] == ["READY"]


def test_single_pair_answers_flat_vector(registered: RunningServer, tiny_encoder: InstructorEncoder) -> None:
    response = registered.predict(NAME, {"inputs": [SCIENCE, TEXT]})
    assert response.status_code == 200, response.text
    vector = response.json()
    assert all(isinstance(value, float) for value in vector)
    assert_close(vector, tiny_encoder.encode([(SCIENCE, TEXT)])[0].tolist())


def test_batch_answers_vectors_in_order(registered: RunningServer, tiny_encoder: InstructorEncoder) -> None:
    pairs = [[SCIENCE, TEXT], [WIKI, TEXT], ["", "Plain text."]]
    response = registered.predict(NAME, {"inputs": pairs})
    assert response.status_code == 200, response.text
    expected = tiny_encoder.encode([tuple(pair) for pair in pairs]).tolist()
    for actual, wanted in zip(response.json(), expected, strict=True):
        assert_close(actual, wanted)


def test_json_without_content_type_is_accepted(registered: RunningServer) -> None:
    key = registered.keys().inference
    body = b'{"inputs": ["Represent the title:", "C++ & 100% = fun"]}'
    plain = requests.post(
        f"{registered.inference_url}/predictions/{NAME}",
        data=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    typed = registered.predict(NAME, {"inputs": ["Represent the title:", "C++ & 100% = fun"]})
    assert plain.status_code == 200 and plain.json() == typed.json()


def test_bad_request_gets_400_naming_field(registered: RunningServer) -> None:
    response = registered.predict(NAME, {"inputs": [["Represent:", 5]]})
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "type": "InvalidInputError",
        "message": "inputs[0][1] (text) must be a string, got number",
    }


def test_too_many_pairs_gets_413(registered: RunningServer) -> None:
    response = registered.predict(NAME, {"inputs": [["", "text"]] * 129})
    assert response.status_code == 413
    assert "limit of 128" in response.json()["message"]


def test_concurrent_requests_batch_together_and_bad_one_is_isolated(
    registered: RunningServer, tiny_encoder: InstructorEncoder
) -> None:
    # Exactly two full batches (batch_size 4): eight requests released together, so the malformed
    # one always shares its batch with valid ones.
    bodies: list[object] = [
        {"inputs": [f"Represent sentence {i}:", f"Text number {i} about topic {i % 3}."]} for i in range(6)
    ]
    bodies.insert(3, {"inputs": [["Represent:", None]]})
    bodies.append({"inputs": [[SCIENCE, TEXT], [WIKI, "Another text."]]})
    barrier = threading.Barrier(len(bodies))

    def send(body: object) -> requests.Response:
        barrier.wait()
        return registered.predict(NAME, body)

    log_before = len(registered.model_log())
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(send, bodies))
    for body, response in zip(bodies, responses, strict=True):
        pairs = body["inputs"]
        if pairs == [["Represent:", None]]:
            assert response.status_code == 400
            assert response.json()["message"] == "inputs[0][1] (text) must be a string, got null"
            continue
        assert response.status_code == 200, response.text
        if isinstance(pairs[0], str):
            assert_close(response.json(), tiny_encoder.encode([tuple(pairs)])[0].tolist())
        else:
            for actual, wanted in zip(
                response.json(), tiny_encoder.encode([tuple(p) for p in pairs]).tolist(), strict=True
            ):
                assert_close(actual, wanted)

    def logged_batches() -> list[tuple[str, str]]:
        return re.findall(r"batch of (\d+) requests: (\d+) rejected", registered.model_log()[log_before:])

    # The worker's log lines reach model_log.log asynchronously: wait for all of them.
    server.wait_for(lambda: sum(int(size) for size, _ in logged_batches()) >= len(bodies), 30, "the batch log")
    batches = logged_batches()
    assert sum(int(size) for size, _ in batches) == len(bodies), batches
    assert any(int(size) > 1 and int(rejected) == 1 for size, rejected in batches), batches


def test_request_without_token_is_refused(registered: RunningServer) -> None:
    inference = requests.post(f"{registered.inference_url}/predictions/{NAME}", json={"inputs": ["", "x"]}, timeout=30)
    management = requests.get(f"{registered.management_url}/models", timeout=30)
    wrong = requests.post(
        f"{registered.inference_url}/predictions/{NAME}",
        json={"inputs": ["", "x"]},
        headers={"Authorization": "Bearer not-the-key"},
        timeout=30,
    )
    for response in (inference, management, wrong):
        # TorchServe 0.12 answers a missing or wrong key with 400 (never 401).
        assert response.status_code == 400
        assert "Token Authorization failed" in response.text


def test_registration_from_url_is_refused(registered: RunningServer) -> None:
    for url in ("http://example.com/model.mar", f"file://{registered.model_store}/{NAME}.mar", "../x.mar"):
        with pytest.raises(ManagementError) as raised:
            registered.management.register(url)
        assert raised.value.status == 404
        assert "allowed" in raised.value.message or "Relative path" in raised.value.message


def test_expired_management_key_is_renewed(registered: RunningServer) -> None:
    key_file = registered.layout.key_file
    original = key_file.read_text()
    stale = registered.keys().management
    key_file.write_text(original.replace(f'"{stale}"', '"stale-key"'))
    assert registered.management.describe(NAME)[0]["modelName"] == NAME
    assert registered.keys().management not in (stale, "stale-key")


def test_scale_up_and_down(registered: RunningServer) -> None:
    client = registered.management
    client.scale(NAME, 2, 2)
    server.wait_for(
        lambda: len(client.describe(NAME)[0]["workers"]) == 2 and server.workers_ready(client, NAME),
        120,
        "two READY workers",
    )
    assert registered.predict(NAME, {"inputs": ["", "still answers"]}).status_code == 200
    client.scale(NAME, 1, 1)
    server.wait_for(lambda: len(client.describe(NAME)[0]["workers"]) == 1, 120, "one worker")


def test_metrics_answer_on_loopback(registered: RunningServer) -> None:
    response = requests.get(f"{registered.metrics_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert "ts_inference_requests_total" in response.text


def test_unregister_removes_model(registered: RunningServer) -> None:
    registered.management.unregister(NAME)
    with pytest.raises(ManagementError) as raised:
        registered.management.describe(NAME)
    assert raised.value.status == 404
    assert registered.predict(NAME, {"inputs": ["", "x"]}).status_code == 404
