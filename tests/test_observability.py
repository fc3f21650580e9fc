"""Against one real TorchServe: exact handler metrics, truncation per body style, and refused workflows.

The module shares the ``torchserve`` fixture's server (repo config.properties, free loopback ports).
Its own archive ``metered`` (tiny model, ``max_length`` 48, batch_size 4, 400 ms delay) carries
the traffic, so the ``ModelName="metered"`` series count only what these tests send. Counts are
compared as differences between two scrapes of the metrics port.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from handler.encoder import InstructorEncoder
from tests.conftest import BATCHING, RunningServer
from tests.test_truncation import LONG, MAX_LENGTH, SHORT, SHORT_SETTINGS, TITLE
from toolkit.build.archive import build_archive
from toolkit.serve import server
from toolkit.serve.prometheus import Samples, scrape, total

pytestmark = pytest.mark.integration

NAME = "metered"


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples for this model whose labels include ``labels``."""
    return total(samples, name, ModelName=NAME, **labels)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_for_requests(metrics_url: str, before: Samples, count: int) -> Samples:
    """Scrape until ``count`` more requests are counted (they are emitted last per batch)."""
    samples: dict[str, Samples] = {}

    def counted() -> bool:
        samples["now"] = scrape(metrics_url)
        return delta(before, samples["now"], "instructor_requests_total") >= count

    server.wait_for(counted, 60, f"{count} requests in instructor_requests_total")
    return samples["now"]


@pytest.fixture(scope="module")
def metered(torchserve: RunningServer, tiny_model_dir: Path) -> RunningServer:
    """The ``metered`` archive (max_length 48) registered beside the fixture's own, one worker."""
    build_archive(tiny_model_dir, torchserve.model_store, SHORT_SETTINGS, BATCHING, name=NAME)
    assert "registered" in torchserve.management.register(f"{NAME}.mar", initial_workers=1)["status"]
    return torchserve


@pytest.fixture(scope="module")
def short_encoder(tiny_model_dir: Path) -> InstructorEncoder:
    return InstructorEncoder.from_folder(tiny_model_dir, SHORT_SETTINGS)


KNOWN_TRAFFIC: list[tuple[object, int]] = [
    ({"inputs": [TITLE, SHORT]}, 200),
    ({"inputs": [[TITLE, SHORT], [TITLE, LONG], ["", "Short text."]]}, 200),
    ({"input": [SHORT, LONG], "instruction": TITLE}, 200),
    ({"inputs": [[TITLE, LONG]], "truncate": False}, 413),
    ({"inputs": 5}, 400),
    ({"instances": [["", "Short text."]]}, 200),
]


def embedded_pairs(body: Mapping[str, object]) -> list[tuple[str, str]]:
    if "input" in body:
        return [(str(body["instruction"]), text) for text in body["input"]]
    pairs = body.get("instances", body.get("inputs"))
    return [tuple(pairs)] if isinstance(pairs[0], str) else [tuple(pair) for pair in pairs]


def test_metrics_count_known_traffic_exactly(metered: RunningServer, short_encoder: InstructorEncoder) -> None:
    before = scrape(metered.metrics_url)
    # One request at a time: each is its own batch.
    for body, status in KNOWN_TRAFFIC:
        response = metered.predict(NAME, body)
        assert response.status_code == status, response.text
    after = wait_for_requests(metered.metrics_url, before, len(KNOWN_TRAFFIC))

    served = [embedded_pairs(body) for body, status in KNOWN_TRAFFIC if status == 200]
    rows = [short_encoder.tokenize(pairs) for pairs in served]
    reports = [short_encoder.encode_rows_reported(request_rows)[1] for request_rows in rows]
    expected = {
        ("instructor_requests_total", "200"): 4,
        ("instructor_requests_total", "413"): 1,
        ("instructor_requests_total", "400"): 1,
    }
    for (name, status), count in expected.items():
        assert delta(before, after, name, Status=status) == count, (name, status)
    assert delta(before, after, "instructor_requests_total") == len(KNOWN_TRAFFIC)
    assert delta(before, after, "instructor_pairs_total") == 7
    assert delta(before, after, "instructor_tokens_total") == sum(len(r.input_ids) for rs in rows for r in rs)
    assert delta(before, after, "instructor_truncated_inputs_total") == 2
    assert delta(before, after, "instructor_padding_tokens_total") == sum(report.padding_tokens for report in reports)
    # Histograms: six batches of one request; five tokenized (the 400 never was); four ran the model.
    assert delta(before, after, "instructor_batch_requests_count") == 6
    assert delta(before, after, "instructor_batch_requests_sum") == 6
    assert delta(before, after, "instructor_batch_requests_bucket", le="1.0") == 6
    assert delta(before, after, "instructor_batch_pairs_count") == 6
    assert delta(before, after, "instructor_batch_pairs_sum") == 7
    assert delta(before, after, "instructor_tokenize_seconds_count") == 5
    assert delta(before, after, "instructor_engine_seconds_count") == 4
    assert delta(before, after, "instructor_batch_padding_ratio_count") == 4
    assert delta(before, after, "instructor_batch_micro_batches_count") == 4
    assert delta(before, after, "instructor_batch_micro_batches_sum") == sum(r.micro_batches for r in reports)
    assert 0 < delta(before, after, "instructor_engine_seconds_sum") < 60
    # handle() wraps every batch, the rejected ones too, and holds the forward passes.
    assert delta(before, after, "instructor_handle_seconds_count") == 6
    handled = delta(before, after, "instructor_handle_seconds_sum")
    assert handled >= delta(before, after, "instructor_engine_seconds_sum")
    # Every series carries the model's name, and TorchServe adds the host.
    names = {name for name, labels in after if name.startswith("instructor_") and ("ModelName", NAME) in labels}
    assert len(names) == 12 + 7 * 2  # 5 counters + 7 histograms (_bucket, _count, _sum), no _created
    assert all({"ModelName", "Hostname"} <= {key for key, _ in labels} for name, labels in after if name in names)


BODY_STYLES = [
    ("native", lambda truncate: {"inputs": [[TITLE, SHORT], [TITLE, LONG]], "truncate": truncate}, "inputs[1]"),
    ("openai", lambda truncate: {"input": [LONG], "instruction": TITLE, "truncate": truncate}, "input[0]"),
    (
        "kserve-v1",
        lambda truncate: {"instances": [[TITLE, LONG]], "parameters": {"truncate": truncate}},
        "instances[0]",
    ),
    (
        "kserve-v2",
        lambda truncate: {
            "inputs": [
                {"name": "pairs", "shape": [2, 2], "datatype": "BYTES", "data": [[TITLE, SHORT], [TITLE, LONG]]}
            ],
            "parameters": {"truncate": truncate},
        },
        "inputs[0].data[1]",
    ),
]


@pytest.mark.parametrize(("style", "make_body", "field"), BODY_STYLES, ids=[style for style, _, _ in BODY_STYLES])
def test_truncation_on_and_off_for_each_body_style(
    metered: RunningServer, short_encoder: InstructorEncoder, style: str, make_body: object, field: str
) -> None:
    long_tokens = short_encoder.tokenize([(TITLE, LONG)])[0].full_length
    refused = metered.predict(NAME, make_body(False))
    assert refused.status_code == 413, refused.text
    body = refused.json()
    assert body["type"] == "InputTooLongError" and (body["tokens"], body["max_length"]) == (long_tokens, MAX_LENGTH)
    assert body["message"].startswith(f"{field} has {long_tokens} tokens, more than the limit of {MAX_LENGTH}")
    answered = metered.predict(NAME, make_body(True))
    assert answered.status_code == 200, answered.text
    if style == "openai":
        assert answered.json()["usage"]["truncated_inputs"] == 1
        assert answered.json()["usage"]["prompt_tokens"] == MAX_LENGTH


def test_native_token_counts_over_http(metered: RunningServer, short_encoder: InstructorEncoder) -> None:
    pairs = [[TITLE, SHORT], [TITLE, LONG]]
    plain = metered.predict(NAME, {"inputs": pairs})
    counted = metered.predict(NAME, {"inputs": pairs, "return_token_counts": True})
    assert plain.status_code == counted.status_code == 200
    assert isinstance(plain.json(), list) and counted.json()["embeddings"] == plain.json()
    short_tokens = len(short_encoder.tokenize([(TITLE, SHORT)])[0].input_ids)
    assert counted.json()["token_counts"] == [short_tokens, MAX_LENGTH]
    assert counted.json()["truncated"] == [False, True]


def test_mixed_batch_over_http_refuses_only_the_long_request(
    metered: RunningServer, short_encoder: InstructorEncoder
) -> None:
    bodies = [
        {"inputs": [TITLE, SHORT]},
        {"inputs": [[TITLE, SHORT], [TITLE, LONG]], "truncate": False},
        {"input": [LONG], "instruction": TITLE},
        {"inputs": [[TITLE, LONG]], "return_token_counts": True},
    ]
    barrier = threading.Barrier(len(bodies))

    def send(body: object) -> requests.Response:
        barrier.wait()
        return metered.predict(NAME, body)

    before = scrape(metered.metrics_url)
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        single, refused, openai, counted = pool.map(send, bodies)
    after = wait_for_requests(metered.metrics_url, before, len(bodies))
    # The four requests (batch_size 4) shared one batch.
    assert delta(before, after, "instructor_batch_requests_count") == 1
    assert delta(before, after, "instructor_batch_requests_sum") == 4
    assert delta(before, after, "instructor_requests_total", Status="413") == 1

    short_vector, long_vector = short_encoder.encode([(TITLE, SHORT), (TITLE, LONG)])
    assert refused.status_code == 413 and refused.json()["index"] == 1
    assert single.status_code == 200 and torch.allclose(torch.tensor(single.json()), short_vector, atol=1e-5)
    assert openai.status_code == 200
    assert torch.allclose(torch.tensor(openai.json()["data"][0]["embedding"]), long_vector, atol=1e-5)
    assert counted.status_code == 200 and counted.json()["truncated"] == [True]
    assert torch.allclose(torch.tensor(counted.json()["embeddings"][0]), long_vector, atol=1e-5)


def write_workflow_archive(path: Path, marker: Path, model_archive: str) -> None:
    """A valid workflow archive: a DAG of one Python function and one model; its code writes ``marker``.

    Under TorchServe 0.12.0's defaults (workflow_store = model_store) registering it succeeds, its
    Python runs in a new worker and ``model_archive`` is registered as ``probe__m1``.
    """
    handler = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('workflow code ran')\n\n\n"
        "def pre(data, context):\n"
        "    return [row.get('data') or row.get('body') for row in data] if data else None\n"
    )
    spec = f"models:\n  min-workers: 1\n  max-workers: 1\n  m1:\n    url: {model_archive}\ndag:\n  pre: [m1]\n"
    manifest = {
        "archiverVersion": "1.0",
        "createdOn": "01/01/2026",
        "workflow": {"workflowName": "probe", "handler": "probe.py", "specFile": "probe.yaml"},
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("WAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("probe.yaml", spec)
        archive.writestr("probe.py", handler)


def test_workflow_registration_is_refused(metered: RunningServer, tmp_path: Path) -> None:
    marker = tmp_path / "workflow-code-ran"
    write_workflow_archive(metered.model_store / "probe.war", marker, f"{NAME}.mar")
    session = metered.management.session
    url = f"{metered.management_url}/workflows"
    for archive in ("probe.war", f"file://{metered.model_store}/probe.war", "../model_store/probe.war"):
        response = session.request("POST", url, params={"url": archive}, timeout=120)
        assert response.status_code == 404, response.text
        message = response.json()["message"]
        assert any(reason in message for reason in ("workflow store", "allowed URL", "Relative path")), message
    assert session.request("GET", url).json() == {"workflows": []}
    assert "probe__m1" not in metered.management.list_models()
    assert not marker.exists()
    inference_key = metered.keys().inference
    response = requests.post(
        f"{metered.inference_url}/wfpredict/probe",
        json={"inputs": ["", "x"]},
        headers={"Authorization": f"Bearer {inference_key}"},
        timeout=30,
    )
    assert response.status_code == 404


def test_customized_describe_shows_handler_settings(metered: RunningServer) -> None:
    url = f"{metered.management_url}/models/{NAME}"
    response = metered.management.session.request("GET", url, params={"customized": "true"})
    assert response.status_code == 200, response.text
    (description,) = response.json()
    assert description["customizedMetadata"]["handler"]["max_length"] == MAX_LENGTH
