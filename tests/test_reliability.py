"""Reliability against a real TorchServe: live fuzzing, load, a killed worker, bad models, limits.

Each test is bounded in requests and time. RELIABILITY_SCALE (default 1; `make soak` sets 10)
multiplies the request counts. Figures go to .run/reliability.json and the terminal summary;
docs/reliability.md reports a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
import torch

from handler.encoder import InstructorEncoder
from handler.errors import ServingError
from handler.request_parsing import EmbeddingRequest, WireFormat, parse_request
from tests.bodies import answer_vectors, random_body
from tests.conftest import EXCLUDE, REPO_ROOT, RunningServer, registered_model
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.serve import server
from toolkit.serve.management import ManagementError

pytestmark = pytest.mark.integration

SCALE = int(os.environ.get("RELIABILITY_SCALE", "1"))
LIVE_BATCH_SIZE = 8  # the live fixture's batch_size
WORKER_DIED = 507  # what TorchServe's frontend answers the requests of a batch whose worker died
NAME = "reliability"
TOLERANCE = 1e-5
REPORT: dict[str, object] = {}
LEAK_PATTERN = re.compile(r"Traceback|File \"|/tmp/|/work/|/home/|site-packages|\.py\b")


@pytest.fixture(scope="module")
def live(torchserve: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The tiny archive on the session's shared TorchServe as ``reliability``: batch_size 8, 20 ms delay, one worker."""
    workers = WorkerConfig(batch_size=LIVE_BATCH_SIZE, max_batch_delay_ms=20)
    build_archive(tiny_model_dir, torchserve.model_store, EXCLUDE, workers, name=NAME, archive_format="no-archive")
    try:
        with registered_model(torchserve, NAME, NAME) as running:
            yield running
    finally:
        report = REPO_ROOT / ".run" / "reliability.json"
        report.parent.mkdir(exist_ok=True)
        report.write_text(json.dumps(REPORT, indent=2) + "\n")


def worker(live: RunningServer) -> dict[str, object]:
    (description,) = live.management.describe(NAME)
    (only,) = description["workers"]
    return only


def post_raw(live: RunningServer, body: bytes, content_type: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {live.keys().inference}"}
    if content_type:
        headers["Content-Type"] = content_type
    return requests.post(f"{live.inference_url}/predictions/{NAME}", data=body, headers=headers, timeout=120)


def lone_request(body: bytes) -> EmbeddingRequest | None:
    """How the handler parses a body alone: its request, or None when it must refuse it."""
    try:
        return parse_request({"body": body}, 128)
    except ServingError:
        return None


def expected_vectors(encoder: InstructorEncoder, body: bytes) -> object | None:
    """What a native body should get alone: its vectors, or None when the handler must refuse it."""
    request = lone_request(body)
    if request is None:
        return None
    vectors = encoder.encode(list(request.pairs)).tolist()
    return vectors[0] if request.single else vectors


def close(actual: object, expected: object) -> bool:
    return torch.allclose(torch.tensor(actual), torch.tensor(expected), atol=TOLERANCE)


def run_concurrently(count: int, concurrency: int, send: Callable[[int], object]) -> list[object]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(send, range(count)))


def test_live_fuzz_never_5xx_and_worker_survives(live: RunningServer, tiny_encoder: InstructorEncoder) -> None:
    rng = random.Random(1234)
    count = 1000 * SCALE
    bodies = [random_body(rng) for _ in range(count)]
    content_types = [rng.choice(["application/json", None, "text/plain"]) for _ in range(count)]
    before = worker(live)

    def send(index: int) -> tuple[int, str]:
        response = post_raw(live, bodies[index], content_types[index])
        return response.status_code, response.text

    results = run_concurrently(count, 8, send)
    statuses = Counter(status for status, _ in results)
    encoded: Counter[str] = Counter()
    wrong = 0
    for body, (status, text) in zip(bodies, results, strict=True):
        assert status < 500, text
        assert not LEAK_PATTERN.search(text) or status == 200, text
        request = lone_request(body)
        if status == 200:
            assert request is not None, body
            actual = answer_vectors(request, json.loads(text))
            wrong += not close(actual, tiny_encoder.encode(list(request.pairs)).tolist())
            encoded[request.protocol.value] += 1
        else:
            assert status in (400, 413, 415), text
    after = worker(live)
    assert (after["pid"], after["startTime"]) == (before["pid"], before["startTime"]), "the worker restarted"
    assert live.predict(NAME, {"inputs": ["", "still answers"]}).status_code == 200
    assert wrong == 0
    # Every protocol's bodies reached the encoder (about 40 valid bodies each at scale 1).
    assert all(encoded[protocol.value] >= 20 * SCALE for protocol in WireFormat), encoded
    REPORT["live_fuzz"] = {
        "bodies": count,
        "statuses": dict(sorted(statuses.items())),
        "encoded_by_protocol": dict(sorted(encoded.items())),
        "worker_restarts": 0,
    }


def load_pool(rng: random.Random, size: int) -> list[dict[str, object]]:
    """Distinct valid requests: singles, batches, batches mixing instructions."""
    instructions = ["", "a", "Represent the title:", "Represent the Wikipedia question for retrieval:"]
    pool = []
    for index in range(size):
        texts = [
            f"Text {index}-{k}: " + " ".join(rng.choice(["alpha", "beta", "Café", "北京", "42"]) for _ in range(8))
            for k in range(rng.randint(1, 8))
        ]
        pairs = [[rng.choice(instructions), text] for text in texts]
        pool.append({"inputs": pairs[0]} if rng.random() < 0.5 else {"inputs": pairs})
    return pool


def test_load_no_lost_or_crossed_answers(live: RunningServer, tiny_encoder: InstructorEncoder) -> None:
    rng = random.Random(99)
    pool = load_pool(rng, 200)
    expected = [expected_vectors(tiny_encoder, json.dumps(body).encode()) for body in pool]
    count = 2000 * SCALE
    picks = [rng.randrange(len(pool)) for _ in range(count)]
    process = psutil.Process(int(worker(live)["pid"]))
    rss_before = process.memory_info().rss

    def send(index: int) -> tuple[int, bool]:
        response = live.predict(NAME, pool[picks[index]])
        return response.status_code, response.ok and close(response.json(), expected[picks[index]])

    started = time.monotonic()
    results = run_concurrently(count, 32, send)
    elapsed = time.monotonic() - started
    rss_after = process.memory_info().rss
    non_2xx = sum(status != 200 for status, _ in results)
    mismatches = sum(status == 200 and not correct for status, correct in results)
    growth_mb = (rss_after - rss_before) / 2**20
    REPORT["load"] = {
        "requests": count,
        "concurrency": 32,
        "pairs": sum(len(pool[p]["inputs"]) if isinstance(pool[p]["inputs"][0], list) else 1 for p in picks),
        "non_2xx": non_2xx,
        "mismatches": mismatches,
        "seconds": round(elapsed, 1),
        "worker_rss_mb_before": round(rss_before / 2**20, 1),
        "worker_rss_growth_mb": round(growth_mb, 1),
    }
    assert non_2xx == 0 and mismatches == 0
    assert growth_mb < 200, f"worker RSS grew by {growth_mb:.0f} MB"


def test_killed_worker_restarts_and_no_wrong_vector(live: RunningServer, tiny_encoder: InstructorEncoder) -> None:
    """Only the batch inside the killed worker fails, each request with TorchServe's 507 "Worker died."."""
    rng = random.Random(7)
    pool = load_pool(rng, 50)
    expected = [expected_vectors(tiny_encoder, json.dumps(body).encode()) for body in pool]
    victim = int(worker(live)["pid"])
    count = 400 * SCALE
    killed_at: list[float] = []

    def send(index: int) -> tuple[int, bool, float, float, str]:
        if index == count // 4:
            os.kill(victim, signal.SIGKILL)
            killed_at.append(time.monotonic())
        sent_at = time.monotonic()
        # A connection error is not caught: the frontend must keep answering while a worker dies.
        response = live.predict(NAME, pool[index % len(pool)])
        correct = response.ok and close(response.json(), expected[index % len(pool)])
        return response.status_code, correct, sent_at, time.monotonic(), response.text

    results = run_concurrently(count, 16, send)
    wrong = sum(status == 200 and not correct for status, correct, _, _, _ in results)
    failed = [(status, text) for status, _, _, _, text in results if status != 200]
    assert wrong == 0
    assert all(status == WORKER_DIED and "Worker died" in text for status, text in failed), failed
    assert len(failed) <= LIVE_BATCH_SIZE, f"{len(failed)} requests failed: more than the killed batch"

    def answers() -> bool:
        return live.predict(NAME, {"inputs": ["", "back again"]}).status_code == 200

    server.wait_for(answers, 120, "an answer after the worker was killed", interval_s=0.1)
    # Recovery: from the kill to the first 200 for a request sent after the kill.
    answered = [done for status, _, sent, done, _ in results if status == 200 and sent > killed_at[0]]
    recovery_s = (min(answered) if answered else time.monotonic()) - killed_at[0]
    new = worker(live)
    assert int(new["pid"]) != victim and new["status"] == "READY"
    REPORT["worker_kill"] = {
        "requests": count,
        "failed_in_flight": len(failed),
        "failed_statuses": dict(Counter(status for status, _ in failed)),
        "wrong_vectors": wrong,
        "recovered_within_s": round(recovery_s, 1),
    }
    assert recovery_s < 120


def test_oversized_request_gets_413_and_largest_batch_fits(live: RunningServer) -> None:
    limit = int(server.read_properties(live.layout.config_file.read_text())["max_request_size"])
    huge = json.dumps({"inputs": ["a", "x" * (limit + 1024)]}).encode()
    assert post_raw(live, huge, "application/json").status_code == 413
    largest = live.predict(NAME, {"inputs": [["Represent the title:", "word " * 400]] * 128})
    assert largest.status_code == 200 and len(largest.json()) == 128


def test_corrupt_model_fails_registration_clearly(live: RunningServer, tiny_model_dir: Path) -> None:
    folder = build_archive(tiny_model_dir, live.model_store, EXCLUDE, name="corrupt", archive_format="no-archive")
    weights = folder / "model" / "model.safetensors"
    weights.unlink()  # a hard link to the test model: replace it, never write through it
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    started = time.monotonic()
    try:
        with pytest.raises(ManagementError) as raised:
            live.management.register("corrupt", initial_workers=1)
    finally:
        with contextlib.suppress(ManagementError):  # never leave a failing model retrying on the shared server
            live.management.unregister("corrupt")
    elapsed = time.monotonic() - started
    assert raised.value.status == 500 and "Failed to start workers" in raised.value.message
    assert "corrupt or incomplete" in server.last_worker_error(live.layout)
    assert elapsed < 120
    REPORT["corrupt_model"] = {
        "refused_after_s": round(elapsed, 1),
        "worker_log": server.last_worker_error(live.layout),
    }
    assert live.predict(NAME, {"inputs": ["", "other model unaffected"]}).status_code == 200


def test_listeners_are_loopback_only(live: RunningServer) -> None:
    frontend = psutil.Process(server.running_pid(live.layout))
    listening = [conn.laddr for conn in frontend.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
    assert listening, "the frontend listens nowhere?"
    assert {address.ip for address in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    REPORT["listeners"] = sorted(f"{address.ip}:{address.port}" for address in listening)


def test_no_token_refused_everywhere(live: RunningServer) -> None:
    inference = requests.post(f"{live.inference_url}/predictions/{NAME}", json={"inputs": ["", "x"]}, timeout=30)
    ping = requests.get(f"{live.inference_url}/ping", timeout=30)
    management = requests.get(f"{live.management_url}/models", timeout=30)
    register = requests.post(f"{live.management_url}/models", params={"url": f"{NAME}.mar"}, timeout=30)
    for response in (inference, ping, management, register):
        assert response.status_code == 400 and "Token Authorization failed" in response.text
