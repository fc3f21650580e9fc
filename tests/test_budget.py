"""The token budget: no batch is planned past responseTimeout, so one huge request never kills a worker.

Unit: the admission rule, the budget's arithmetic, the builder's responseTimeout. Served: the
instructor-large shape in fp32 (the default, and the slowest mode) with one request of 128 pairs
of ~480 words beside small requests in flight. Before the budget that request ran past
``responseTimeout``, TorchServe killed the worker and failed its whole batch with it ("Worker
died."); now it is answered (413, naming its tokens and the budget) and the small ones are 200
from the same worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from handler.budget import (
    BUDGET_SHARE,
    MAX_RESPONSE_TIMEOUT_S,
    MIN_RESPONSE_TIMEOUT_S,
    TokenBudget,
    admit,
    measure_rate,
    response_timeout_for,
)
from handler.encoder import InstructorEncoder
from handler.errors import BatchFullError, TokenBudgetError
from instructor_client import InstructorClient
from tests.conftest import EXCLUDE
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.models.tiny_model import build_test_model
from toolkit.serve.scratch_server import RunningServer, running_server

# Short enough that the test's big request is over the budget on any machine this shape runs on.
SERVED_RESPONSE_TIMEOUT_S = 20


def test_budget_is_the_measured_rate_times_the_timeout_share() -> None:
    budget = TokenBudget.of(tokens_per_s=1000.0, response_timeout_s=120)
    assert budget.tokens_per_batch == int(1000 * 120 * BUDGET_SHARE)
    assert budget.describe()["measured_tokens_per_s"] == 1000.0


def test_admission_in_batch_order() -> None:
    budget = TokenBudget(tokens_per_batch=100, tokens_per_s=1.0, response_timeout_s=200)
    refused = admit([30, None, 150, 60, 20, 40], budget, max_pairs=[1, 1, 2, 1, 1, 1])
    assert set(refused) == {2, 4, 5}  # 30 + 60 admitted; 150 alone is over; 20 and 40 would overfill
    assert isinstance(refused[2], TokenBudgetError) and isinstance(refused[4], BatchFullError)
    body = refused[2].body()
    assert (body["code"], body["tokens"], body["budget_tokens"], body["max_pairs"]) == (413, 150, 100, 2)
    assert "split it into requests of at most 2 pairs" in body["message"]
    assert refused[5].body()["code"] == 503 and "retry" in refused[5].body()["message"]
    assert admit([100], budget, [1]) == {}


def test_builder_sizes_response_timeout_from_the_measured_rate() -> None:
    assert response_timeout_for(tokens_per_s=100_000, request_tokens=65_536) == MIN_RESPONSE_TIMEOUT_S
    assert response_timeout_for(tokens_per_s=500, request_tokens=65_536) == 263  # 65536 / (500 * 0.5)
    assert response_timeout_for(tokens_per_s=10, request_tokens=65_536) == MAX_RESPONSE_TIMEOUT_S


def test_rate_is_measured_on_a_full_length_row(tiny_encoder: InstructorEncoder) -> None:
    assert measure_rate(tiny_encoder) > 0


def test_archive_records_the_derived_timeout(tmp_path: Path, tiny_model_dir: Path) -> None:
    import yaml

    archive = build_archive(tiny_model_dir, tmp_path, EXCLUDE, archive_format="no-archive")
    config = yaml.safe_load((archive / "model-config.yaml").read_text())
    assert MIN_RESPONSE_TIMEOUT_S <= config["responseTimeout"] <= MAX_RESPONSE_TIMEOUT_S
    fixed = build_archive(tiny_model_dir, tmp_path / "fixed", EXCLUDE, WorkerConfig(response_timeout_s=77))
    assert fixed.exists()


@pytest.fixture(scope="module")
def large_fp32(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The instructor-large shape, fp32, on its own TorchServe, with a short responseTimeout."""
    root = tmp_path_factory.mktemp("large-fp32")
    model = build_test_model(root / "large", "large")
    workers = WorkerConfig(batch_size=4, max_batch_delay_ms=50, response_timeout_s=SERVED_RESPONSE_TIMEOUT_S)
    build_archive(model, root / "store", EXCLUDE, workers, name="large")
    with running_server(root / "server", root / "store") as server:
        server.management.register("large.mar", initial_workers=1)
        yield server


def words(count: int, seed: int) -> str:
    vocabulary = [
        "the",
        "river",
        "bank",
        "reviewed",
        "results",
        "supply",
        "chain",
        "hiring",
        "plan",
        "billing",
        "cloud",
        "provider",
        "risk",
        "deadline",
    ]
    return " ".join(vocabulary[(seed + index * 5) % len(vocabulary)] for index in range(count))


@pytest.mark.integration
def test_one_maximal_request_never_takes_the_worker_or_its_batch_down(large_fp32: RunningServer) -> None:
    (pid,) = large_fp32.worker_pids("large")
    details = large_fp32.management.describe("large", customized=True)[0]["customizedMetadata"]
    budget = details["token_budget"]
    assert budget["response_timeout_s"] == SERVED_RESPONSE_TIMEOUT_S and budget["tokens_per_batch"] > 0
    big = {"inputs": [["Represent the document for retrieval:", words(480, seed)] for seed in range(128)]}
    # The project's client: a small request that lands in a batch the big one filled gets 503 and retries.
    client = InstructorClient(large_fp32.inference_url, "large", key_file=large_fp32.layout.key_file)

    def send(index: int) -> Any:
        if index == 1:
            return large_fp32.predict("large", big, timeout=SERVED_RESPONSE_TIMEOUT_S * 6)
        return client.embed([("Represent the question:", f"Where is the river bank {index}?")])

    # What one big pair costs, so that the test knows the maximal request is over the budget here.
    counted = large_fp32.predict("large", {"inputs": [big["inputs"][0]], "return_token_counts": True})
    assert counted.status_code == 200, counted.text[:300]
    (pair_tokens,) = counted.json()["token_counts"]
    assert len(big["inputs"]) * pair_tokens > budget["tokens_per_batch"], (
        f"a maximal request ({len(big['inputs'])} x {pair_tokens} tokens) fits this worker's budget of "
        f"{budget['tokens_per_batch']}: lower SERVED_RESPONSE_TIMEOUT_S so the test can see the refusal"
    )
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert all(len(answers[index]) == 1 for index in (0, 2, 3)), "a small request was not answered"
    response = answers[1]
    assert response.status_code == 413, response.text[:300]
    body = response.json()
    assert body["type"] == "TokenBudgetError" and body["tokens"] > body["budget_tokens"]
    assert body["budget_tokens"] == budget["tokens_per_batch"] and "split it" in body["message"]
    assert body["max_pairs"] == max(1, budget["tokens_per_batch"] // pair_tokens)
    # As many of those pairs as the 413 says fit are answered, by the same worker.
    within = {"inputs": big["inputs"][: body["max_pairs"]]}
    accepted = large_fp32.predict("large", within, timeout=SERVED_RESPONSE_TIMEOUT_S * 6)
    assert accepted.status_code == 200, accepted.text[:300]
    assert len(accepted.json()) == body["max_pairs"]
    assert large_fp32.worker_pids("large") == [pid], "the worker restarted"
