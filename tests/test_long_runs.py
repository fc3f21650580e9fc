"""Hours of use in minutes: keys that expire every minute, and a model updated under load.

One TorchServe, started the way a user starts it (``scripts/serve.py``, i.e. ``make serve``) in a
scratch folder on free loopback ports with ``--token-expiration-min 1``, serves the tiny INSTRUCTOR
model. Clients given the key file send for more than three minutes (three expiries) without a failed
request; then ``scripts/serve.py --model demo`` on the live server rolls the name over to MiniLM
(another architecture, another size) while clients keep sending, and every answer is the old
model's vector or the new one's; then a version that cannot load is refused and the old one serves on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.settings import HandlerSettings
from instructor_client import InstructorClient
from tests.conftest import REPO_ROOT
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.models import model_source
from toolkit.serve import server
from toolkit.serve.management import ManagementClient
from toolkit.serve.rollover import Rollover, RolloverError, registered_versions

pytestmark = pytest.mark.integration

NAME = "instructor"
# Longer than three expiries of a one-minute key.
KEY_TEST_S = 195.0
PAIRS = [("Represent the Science title:", f"Sentence {n} about the {topic}.") for n, topic in enumerate("abcdefgh")]


def run_script(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO_ROOT / "scripts" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


class Served:
    """The scratch server ``scripts/serve.py`` started, and the models it can serve."""

    def __init__(self, workdir: Path, models_dir: Path) -> None:
        self.workdir = workdir
        self.models_dir = models_dir
        self.layout = server.ServerLayout(workdir, workdir / "config.properties", workdir / ".run")
        self.inference_url, self.management_url = server.listener_urls(self.layout)

    def serve(self, *args: str) -> subprocess.CompletedProcess[str]:
        common = ["--workdir", str(self.workdir), "--models-dir", str(self.models_dir), "--name", NAME]
        return run_script("serve.py", *common, "--token-expiration-min", "1", *args)

    @property
    def management(self) -> ManagementClient:
        return ManagementClient(self.layout.key_file, self.management_url)

    def client(self, **options: object) -> InstructorClient:
        return InstructorClient(
            self.inference_url,
            NAME,
            key_file=self.layout.key_file,
            management_url=self.management_url,
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("long-runs")
    server.write_loopback_config(workdir, workdir / "model_store", REPO_ROOT / "config.properties")
    running = Served(workdir, tmp_path_factory.mktemp("models"))
    try:
        started = running.serve("--model", "tiny")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "token_expiration_min=1)" in started.stdout and "renews it by itself" in started.stdout
        yield running
    finally:
        run_script("stop.py", "--workdir", str(workdir), timeout=120)


def expected_vectors(spec: str, models_dir: Path) -> torch.Tensor:
    source = model_source.resolve(spec, models_dir)
    settings = HandlerSettings.from_mapping({"instruction_mode": source.instruction_mode.value})
    return InstructorEncoder.from_folder(source.path, settings).encode(PAIRS)


def matches(vectors: list[list[float]], expected: torch.Tensor) -> bool:
    got = torch.tensor(vectors)
    return got.shape == expected.shape and float((got - expected).abs().max()) <= 1e-4


def send_until(stop: Callable[[], bool], client: InstructorClient, answers: list, errors: list) -> None:
    """Embed :data:`PAIRS` again and again, recording (time, vectors) or the error, until ``stop()``."""
    while not stop():
        try:
            answers.append((time.monotonic(), client.embed(PAIRS)))
        except Exception as err:  # noqa: BLE001 - every failure is what the test counts
            errors.append(repr(err))


def under_load(clients: list[InstructorClient], body: Callable[[], None], after_s: float) -> tuple[list, list, float]:
    """Run ``body`` while ``clients`` send; they go on for ``after_s`` after it. Returns answers, errors, its end."""
    answers: list = []
    errors: list = []
    finished: list[float] = []
    threads = [
        threading.Thread(
            target=send_until,
            args=(lambda: bool(finished) and time.monotonic() > finished[0] + after_s, client, answers, errors),
        )
        for client in clients
    ]
    for thread in threads:
        thread.start()
    try:
        body()
    finally:
        finished.append(time.monotonic())
        for thread in threads:
            thread.join()
    return answers, errors, finished[0]


def test_clients_keep_working_across_key_expiries(served: Served) -> None:
    """Three expiries of a one-minute key: one key-file client alone, and several with concurrency."""
    tiny = expected_vectors("tiny", served.models_dir)
    first_key = served.layout.key_file.read_text()
    clients = [served.client(retries=0), served.client(retries=0), served.client(retries=0, max_pairs_per_request=2)]
    clients[2].concurrency = 4
    answers, errors, _ = under_load(clients, lambda: time.sleep(KEY_TEST_S), after_s=0)
    assert errors == []
    assert len(answers) > 100 and all(matches(vectors, tiny) for _, vectors in answers)
    renewals = sum(client.keys.renewals for client in clients if client.keys is not None)
    assert renewals >= 3, f"{renewals} renewals in {KEY_TEST_S:.0f} s of one-minute keys"
    assert served.layout.key_file.read_text() != first_key


def test_toolkit_key_prints_a_fresh_inference_key(served: Served) -> None:
    """For clients that hold only a key: the printed key is new, in the key file, and accepted."""
    old = served.layout.key_file.read_text()
    command = [sys.executable, "-m", "toolkit", "key", "--key-file", str(served.layout.key_file)]
    command += ["--management-url", served.management_url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key and key not in old and key in served.layout.key_file.read_text()
    assert "inference key expires at 20" in result.stderr
    plain = InstructorClient(served.inference_url, NAME, token=key, retries=0)
    assert len(plain.embed(PAIRS)) == len(PAIRS)


def test_make_serve_on_a_live_server_rolls_the_model_over_without_a_failed_request(served: Served) -> None:
    tiny = expected_vectors("tiny", served.models_dir)
    demo = expected_vectors("demo", served.models_dir)
    assert tiny.shape[1] != demo.shape[1]
    before = registered_versions(served.management, NAME)
    outcome: list[subprocess.CompletedProcess[str]] = []
    clients = [served.client(retries=0) for _ in range(4)]
    answers, errors, switched = under_load(clients, lambda: outcome.append(served.serve("--model", "demo")), 5.0)
    (result,) = outcome
    assert result.returncode == 0, result.stdout + result.stderr
    assert errors == []
    old = [vectors for _, vectors in answers if matches(vectors, tiny)]
    new = [(at, vectors) for at, vectors in answers if matches(vectors, demo)]
    assert len(old) + len(new) == len(answers), "an answer was neither model's vectors"
    assert old and new, (len(old), len(new))
    late = [vectors for at, vectors in answers if at > switched]
    assert late and all(matches(vectors, demo) for vectors in late)
    after = registered_versions(served.management, NAME)
    assert len(after) == 1 and after != before
    store = served.workdir / "model_store"
    assert not list(store.glob(f"{NAME}-v*.mar")), "an archive was left under its version's name"
    manifest = json.loads(zipfile.ZipFile(store / f"{NAME}.mar").read("MAR-INF/MANIFEST.json"))
    assert [manifest["model"]["modelVersion"]] == after, "NAME.mar does not hold the served version"


def test_a_version_that_cannot_load_leaves_the_old_one_serving(served: Served, tmp_path: Path) -> None:
    demo = expected_vectors("demo", served.models_dir)
    serving = registered_versions(served.management, NAME)
    source = model_source.resolve("tiny", served.models_dir)
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude"})
    built = build_archive(
        source.path, tmp_path, settings, WorkerConfig(response_timeout_s=30), NAME, "99", archive_format="no-archive"
    )
    for weights in (built / "model").glob("*.safetensors"):
        weights.unlink()  # the worker cannot load this model
    shutil.move(built, served.workdir / "model_store" / f"{NAME}-v99")
    rollover = Rollover(served.management, served.inference_url, say=lambda _line: None)
    with pytest.raises(RolloverError, match=f"{NAME} version 99 did not start, {serving[0]} still serves"):
        rollover.run(NAME, f"{NAME}-v99", "99", 1, timeout_s=120)
    assert registered_versions(served.management, NAME) == serving
    assert matches(served.client(retries=0).embed(PAIRS), demo)
