"""InstructorHandler with TorchServe's real Context: one status per request of a batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from ts.context import Context, RequestProcessor

from handler.cpus import cpu_share
from handler.errors import ModelConfigError
from handler.placement import select_device
from handler.torchserve_handler import InstructorHandler
from tests.conftest import BATCHING, EXCLUDE
from toolkit.build.archive import build_archive


@pytest.fixture(scope="module")
def unpacked_archive(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny archive in no-archive format: the folder TorchServe hands to the handler."""
    store = tmp_path_factory.mktemp("store")
    return build_archive(tiny_model_dir, store, EXCLUDE, BATCHING, archive_format="no-archive")


def make_context(model_dir: Path, batch: int) -> Context:
    model_yaml = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    context = Context("instructor", str(model_dir), {}, batch, None, "0.12.0", model_yaml_config=model_yaml)
    context.request_processor = [RequestProcessor({}) for _ in range(batch)]
    return context


@pytest.fixture(scope="module")
def handler(unpacked_archive: Path) -> InstructorHandler:
    instance = InstructorHandler()
    instance.initialize(make_context(unpacked_archive, 1))
    return instance


def run_batch(handler: InstructorHandler, archive: Path, entries: list[dict[str, object]]) -> list[tuple[int, object]]:
    context = make_context(archive, len(entries))
    answers = handler.handle(entries, context)
    assert len(answers) == len(entries)
    results = []
    for index, answer in enumerate(answers):
        assert context.get_response_content_type(index) == "application/json"
        results.append((context.get_response_status(index)[0], json.loads(answer)))
    return results


def test_batch_with_bad_requests_answers_each_on_its_own(handler: InstructorHandler, unpacked_archive: Path) -> None:
    entries = [
        {"body": {"inputs": ["Represent the title:", "Hello"]}},
        {"body": b'{"inputs": [["a", 1]]}'},
        {"body": {"inputs": [["Represent the title:", "Hello"], ["", "World"]]}},
        {'{"inputs": ["a", "b"]}': b""},
    ]
    results = run_batch(handler, unpacked_archive, entries)
    expected = handler.encoder.encode([("Represent the title:", "Hello"), ("", "World")])
    status, single = results[0]
    assert status == 200 and torch.allclose(torch.tensor(single), expected[0], atol=1e-5)
    assert results[1] == (
        400,
        {"code": 400, "type": "InvalidInputError", "message": "inputs[0][1] (text) must be a string, got number"},
    )
    status, batch = results[2]
    assert status == 200 and torch.allclose(torch.tensor(batch), expected, atol=1e-5)
    assert results[3][0] == 415 and "Content-Type: application/json" in results[3][1]["message"]


def test_all_bad_batch_never_calls_the_model(
    handler: InstructorHandler, unpacked_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert handler.encoder is not None
    calls: list[str] = []
    encode_rows_reported = handler.encoder.encode_rows_reported

    def spy(rows: object) -> object:
        calls.append("encode_rows_reported")
        return encode_rows_reported(rows)

    monkeypatch.setattr(handler.encoder, "encode_rows_reported", spy)
    hook = handler.encoder.engine.transformer.register_forward_hook(lambda *_: calls.append("forward"))
    try:
        results = run_batch(handler, unpacked_archive, [{"body": {}}, {"body": {"inputs": []}}])
        assert [status for status, _ in results] == [400, 400]
        assert calls == []
        # The spy and the hook see a batch that does reach the model.
        assert run_batch(handler, unpacked_archive, [{"body": {"inputs": ["", "x"]}}])[0][0] == 200
    finally:
        hook.remove()
    assert calls[0] == "encode_rows_reported" and "forward" in calls


@pytest.mark.parametrize(
    ("failure", "status", "message"),
    [
        (RuntimeError("/secret/path/model.py line 3: boom"), 500, "the model failed to encode this batch"),
        (MemoryError(), 507, "the worker ran out of memory"),
    ],
)
def test_model_failure_answers_valid_requests_without_details(
    handler: InstructorHandler,
    unpacked_archive: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    status: int,
    message: str,
) -> None:
    def broken(_: object) -> torch.Tensor:
        raise failure

    monkeypatch.setattr(handler.encoder, "encode_rows_reported", broken)
    results = run_batch(handler, unpacked_archive, [{"body": {"inputs": ["", "x"]}}, {"body": {"inputs": 5}}])
    assert results[0][0] == status and results[0][1]["message"].startswith(message)
    assert "/secret" not in json.dumps(results[0][1]) and "Traceback" not in json.dumps(results[0][1])
    assert results[1][0] == 400


@pytest.mark.parametrize(
    "exhausted",
    [MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")],
    ids=["host", "accelerator"],
)
def test_out_of_memory_in_the_model_is_507_and_the_worker_keeps_serving(
    handler: InstructorHandler, unpacked_archive: Path, exhausted: BaseException
) -> None:
    """The model itself runs out of memory mid-batch: every valid request gets 507, bad ones keep their 400."""

    def out_of_memory(module: torch.nn.Module, args: object) -> None:
        raise exhausted

    hook = handler.encoder.engine.transformer.register_forward_pre_hook(out_of_memory)
    try:
        entries = [{"body": {"inputs": ["", "x"]}}, {"body": {"input": ["a", "b"]}}, {"body": {"inputs": 5}}]
        results = run_batch(handler, unpacked_archive, entries)
    finally:
        hook.remove()
    assert [status for status, _ in results] == [507, 507, 400]
    assert results[0][1] == {
        "code": 507,
        "type": "OutOfMemoryError",
        "message": "the worker ran out of memory: send fewer or shorter inputs",
    }
    ((status, vector),) = run_batch(handler, unpacked_archive, [{"body": {"inputs": ["", "x"]}}])
    assert status == 200 and torch.allclose(torch.tensor(vector), handler.encoder.encode([("", "x")])[0])


def test_bad_archive_settings_fail_initialize(unpacked_archive: Path, tmp_path: Path) -> None:
    context = make_context(unpacked_archive, 1)
    context.model_yaml_config = {"handler": {"instruction_mode": "exclude", "batch": 3}}
    with pytest.raises(ModelConfigError, match="unknown handler setting"):
        InstructorHandler().initialize(context)


def test_device_and_threads() -> None:
    assert select_device(None) == torch.device("cpu")
    expected_gpu = torch.device("cuda:1") if torch.cuda.is_available() else torch.device("cpu")
    assert select_device("1") == expected_gpu
    no_cgroup = Path("/nonexistent")
    assert cpu_share(0, workers=2, affinity=16, cgroup_root=no_cgroup, self_cgroup=no_cgroup).threads == 8
    assert cpu_share(0, workers=4, affinity=2, cgroup_root=no_cgroup, self_cgroup=no_cgroup).threads == 1
    assert cpu_share(3, workers=4, affinity=2, cgroup_root=no_cgroup, self_cgroup=no_cgroup).threads == 3


def test_a_torch_worker_follows_the_worker_count_after_scaling(
    unpacked_archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads = CPUs / workers running, recounted while serving (scaling through PUT /models changes it)."""
    import handler.placement as glue

    original = torch.get_num_threads()
    monkeypatch.setattr(glue, "running_workers", lambda: 1)
    instance = InstructorHandler()
    instance.initialize(make_context(unpacked_archive, 1))
    try:
        cpus = instance.cpus.cpus
        assert (instance.cpus.workers, torch.get_num_threads()) == (1, cpus)
        monkeypatch.setattr(glue, "running_workers", lambda: 2)
        instance._threads_checked_at -= glue.THREAD_RECHECK_S + 1
        run_batch(instance, unpacked_archive, [{"body": {"inputs": ["", "Scaled."]}}])
        assert (instance.cpus.workers, torch.get_num_threads()) == (2, max(1, cpus // 2))
        assert instance.describe_handle()["cpus"]["workers"] == 2
    finally:
        torch.set_num_threads(original)
