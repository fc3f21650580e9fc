"""The whole cycle against a real TorchServe: register, predict, batch, scale, unregister.

The session's shared server runs the repo's own config.properties (token authorization on,
loopback only) on free ports. This module registers the tiny INSTRUCTOR archive (workers 1 to
2, batch_size 4, max_batch_delay 20 ms) as ``instructor`` and unregisters it at the end; every
test leaves the model as it found it, so the tests pass in any order.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from handler.encoder import InstructorEncoder
from tests.cases import SCIENCE, TEXT, WIKI
from tests.conftest import EXCLUDE, FULL_BATCHES, SERVED, RunningServer, registered_model
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.serve import server
from toolkit.serve.management import ManagementError

pytestmark = pytest.mark.integration

TOLERANCE = 1e-5
NAME = "instructor"


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    assert max(abs(a - b) for a, b in zip(actual, expected, strict=True)) <= TOLERANCE


@pytest.fixture(scope="module")
def registered(torchserve: RunningServer) -> Iterator[RunningServer]:
    """The tiny archive registered with ``initial_workers=1``; its own model-config.yaml caps the workers."""
    with registered_model(torchserve, f"{NAME}.mar", NAME, initial_workers=1) as running:
        yield running


def test_register_caps_workers_from_archive_config(registered: RunningServer) -> None:
    # The cap can only come from the archive: registration asked for 1 worker, the server's default is 1.
    properties = server.read_properties(registered.layout.config_file.read_text())
    assert properties["default_workers_per_model"] == "1" != str(SERVED.max_workers)
    (description,) = registered.management.describe(NAME)
    assert (description["minWorkers"], description["maxWorkers"]) == (SERVED.min_workers, SERVED.max_workers) == (1, 2)
    assert (description["batchSize"], description["maxBatchDelay"]) == (SERVED.batch_size, SERVED.max_batch_delay_ms)
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


# Batches of 4 with a delay no test waits for: 8 requests sent together always form two full
# batches (TorchServe dispatches a batch the moment it is full), whatever the machine's load.
BATCHED = "batched"


@pytest.fixture(scope="module")
def batched(torchserve: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The tiny model registered as ``batched`` (FULL_BATCHES) on the shared server."""
    build_archive(
        tiny_model_dir, torchserve.model_store, EXCLUDE, FULL_BATCHES, name=BATCHED, archive_format="no-archive"
    )
    with registered_model(torchserve, BATCHED, BATCHED, initial_workers=1) as running:
        yield running


def test_concurrent_requests_batch_together_and_bad_one_is_isolated(
    batched: RunningServer, tiny_encoder: InstructorEncoder
) -> None:
    # Exactly two full batches (batch_size 4): the malformed request always shares its batch with
    # three valid ones. The batches the handler formed are read from its own log lines.
    bodies: list[object] = [
        {"inputs": [f"Represent sentence {i}:", f"Text number {i} about topic {i % 3}."]} for i in range(6)
    ]
    bodies.insert(3, {"inputs": [["Represent:", None]]})
    bodies.append({"inputs": [[SCIENCE, TEXT], [WIKI, "Another text."]]})
    barrier = threading.Barrier(len(bodies))

    def send(body: object) -> requests.Response:
        barrier.wait()
        return batched.predict(BATCHED, body)

    log_before = len(batched.model_log())
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

    def logged_batches() -> list[tuple[int, int]]:
        log = batched.model_log()[log_before:]
        found = re.findall(rf"-{BATCHED}_[^\n]*batch of (\d+) requests: (\d+) rejected", log)
        return [(int(size), int(rejected)) for size, rejected in found]

    # The worker's log lines reach model_log.log asynchronously: wait for both.
    server.wait_for(lambda: len(logged_batches()) >= 2, 30, "the batch log")
    assert sorted(logged_batches()) == [(4, 0), (4, 1)]


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

    def workers(count: int) -> bool:
        return len(client.describe(NAME)[0]["workers"]) == count and server.workers_ready(client, NAME)

    client.scale(NAME, 2, 2)
    try:
        server.wait_for(lambda: workers(2), 120, "two READY workers")
        assert registered.predict(NAME, {"inputs": ["", "still answers"]}).status_code == 200
    finally:
        client.scale(NAME, 1, 1)
        server.wait_for(lambda: workers(1), 120, "one worker")
        # The archive's own range again (1 to 2); TorchServe keeps the one running worker.
        client.scale(NAME, SERVED.min_workers, SERVED.max_workers)
    (description,) = client.describe(NAME)
    assert (description["minWorkers"], description["maxWorkers"]) == (SERVED.min_workers, SERVED.max_workers)
    assert len(description["workers"]) == 1


def test_metrics_answer_on_loopback(registered: RunningServer) -> None:
    response = requests.get(f"{registered.metrics_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert "ts_inference_requests_total" in response.text


def test_unregister_removes_model(torchserve: RunningServer, tiny_model_dir: Path) -> None:
    """On a model of its own (no workers), so the other tests keep theirs."""
    workers = WorkerConfig(min_workers=0, max_workers=1)
    build_archive(
        tiny_model_dir, torchserve.model_store, EXCLUDE, workers, name="disposable", archive_format="no-archive"
    )
    torchserve.management.register("disposable", initial_workers=0)
    assert torchserve.management.describe("disposable")[0]["modelName"] == "disposable"
    torchserve.management.unregister("disposable")
    with pytest.raises(ManagementError) as raised:
        torchserve.management.describe("disposable")
    assert raised.value.status == 404
    assert torchserve.predict("disposable", {"inputs": ["", "x"]}).status_code == 404
