"""The benchmark's pieces: inputs, load generator, limit, report, and one short real run.

Speed is never asserted here (numbers live in docs/benchmarks); what is checked is that the
benchmark measures what it says: the right token lengths, every answer verified, the baseline
computing INSTRUCTOR's vectors, and reports that flag missed targets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from handler.encoder import InstructorEncoder
from handler.settings import EngineName, Precision
from tests.conftest import EXCLUDE, RunningServer, registered_model
from toolkit.bench import batching_sweep, overhead, report
from toolkit.bench.baseline import build_baseline_archive
from toolkit.bench.cli import default_stem, write_results
from toolkit.bench.limit import measure_limit
from toolkit.bench.load import run_load, vectors_in
from toolkit.bench.runner import BenchOptions, link_into_store, run_benchmark
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.build.workload import WORKLOADS, make_pairs, request_bodies, token_lengths, words_for_tokens
from toolkit.models.reference import ReferenceInstructor


def count_words(text: str) -> int:
    return len(text.split())


def test_token_lengths_are_deterministic_and_in_range() -> None:
    lengths = token_lengths(500, seed=3)
    assert lengths == token_lengths(500, seed=3) != token_lengths(500, seed=4)
    assert min(lengths) >= 16 and max(lengths) <= 256
    assert sum(length < 64 for length in lengths) > sum(length >= 128 for length in lengths)  # log-uniform


def test_words_for_tokens_is_the_shortest_text_reaching_the_target() -> None:
    words = ["one", "two", "three"]
    assert words_for_tokens(count_words, words, 7) == "one two three one two three one"
    assert words_for_tokens(count_words, words, 1) == "one"


def test_pairs_have_the_planned_token_lengths() -> None:
    pairs = make_pairs(count_words, 40, seed=1)
    assert len(set(pairs)) == 40
    assert {count_words(instruction) for instruction, _ in pairs} == {8}
    assert [count_words(text) for _, text in pairs] == token_lengths(40, seed=1)


def test_request_bodies_carry_the_pairs_in_order() -> None:
    pairs = [(f"i{n}", f"t{n}") for n in range(5)]
    bodies = request_bodies(pairs, 2)
    assert bodies == [{"inputs": [["i0", "t0"], ["i1", "t1"]]}, {"inputs": [["i2", "t2"], ["i3", "t3"]]}]
    assert request_bodies(pairs, 8) == [{"inputs": [list(pairs[n % 5]) for n in range(8)]}]


def test_workloads_map_to_server_batches() -> None:
    by_name = {workload.name: workload for workload in WORKLOADS}
    assert by_name["1 pair, concurrency 1"].server_batch_pairs(8) == 1
    assert by_name["1 pair, concurrency 32"].server_batch_pairs(8) == 8
    assert by_name["32 pairs, concurrency 2"].server_batch_pairs(8) == 64


class _FakeEmbedder(BaseHTTPRequestHandler):
    """Answers one 2-d vector per pair; a pair whose text is 'fail' gets a 500, 'short' one vector too few."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = [text for _, text in body["inputs"]]
        status = 500 if "fail" in texts else 200
        count = len(texts) - 1 if "short" in texts else len(texts)
        payload = json.dumps([[1.0, 0.0]] * count).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEmbedder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_load_counts_only_complete_answers(fake_server: str) -> None:
    bodies = [
        {"inputs": [["i", "a"], ["i", "b"]]},
        {"inputs": [["i", "fail"]]},
        {"inputs": [["i", "short"], ["i", "c"]]},
    ]
    result = run_load(fake_server, {}, bodies, concurrency=3, duration_s=0, min_requests=9)
    assert result.requests == 9
    assert result.failures == 6 and result.pairs == 6  # 3 x (2-pair body); 'fail' and 'short' fail
    assert len(result.latencies_s) == 3 and result.pairs_per_s > 0
    assert result.latency_ms(50) <= result.latency_ms(99)
    assert vectors_in([[1.0], [2.0]]) == 2 and vectors_in([1.0, 2.0]) == 1 and vectors_in({}) == 0


def test_limit_encodes_whole_batches(tiny_encoder: InstructorEncoder) -> None:
    pairs = make_pairs(count_words, 6)
    result = measure_limit(tiny_encoder, pairs, batch_pairs=4, duration_s=0, min_batches=3)
    assert result.batch_pairs == 4 and result.pairs == 12 and len(result.batch_times_s) == 3
    assert result.pairs_per_s > 0 and result.median_batch_ms > 0


@pytest.mark.integration
def test_baseline_server_computes_instructor_vectors(torchserve: RunningServer, tiny_model_dir: Path) -> None:
    """The baseline must be the reference computation, served one request at a time."""
    archive = build_baseline_archive(tiny_model_dir, torchserve.model_store, "exclude")
    pairs = [["Represent the Science title:", "Parton energy loss in QCD matter."], ["", "No instruction."]]
    with registered_model(torchserve, archive.name, "baseline", initial_workers=1):
        answer = torchserve.predict("baseline", {"inputs": pairs})
        single = torchserve.predict("baseline", {"inputs": pairs[0]})
    assert answer.status_code == 200 and single.status_code == 200
    expected = ReferenceInstructor(tiny_model_dir).encode(pairs)
    assert torch.allclose(torch.tensor(answer.json()), expected, atol=1e-5)
    assert torch.allclose(torch.tensor(single.json()[0]), expected[0], atol=1e-5)


def _document(ours_pps: float, cold: float, added_pct: float, forward_ms: float = 95.0) -> dict[str, Any]:
    load = {
        w.name: {"pairs_per_s": 10.0, "p50_ms": 100.0, "p99_ms": 150.0, "failures": 0, "requests": 5} for w in WORKLOADS
    }
    ours_load = {name: dict(values, pairs_per_s=ours_pps) for name, values in load.items()}
    limit = {w.name: {"pairs_per_s": 40.0, "median_batch_ms": forward_ms} for w in WORKLOADS}
    memory = {
        "one_worker": {"rss": 1000.0, "pss": 900.0, "uss": 200.0, "shared": 800.0},
        "second_worker_added_pss_mib": added_pct * 9,
        "second_worker_added_pct": added_pct,
    }
    ours = {p: {"cold_start_s": cold, "load": ours_load, "memory": memory} for p in ("fp32", "bf16", "int8")}
    return {
        "date": "2026-11-22 00:00 UTC",
        "command": "python scripts/bench.py",
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gib": 24.0,
            "gpu": None,
            "python": "3.11",
            "torch": "2",
            "torchserve": "0.12.0",
        },
        "settings": {"duration_s": 10, "min_requests": 2, "pairs": 256, "batch_size": 8, "max_batch_delay_ms": 5},
        "models": {
            "large": {
                "description": "instructor-large shape",
                "limit": dict.fromkeys(("fp32", "bf16", "int8"), limit),
                "baseline": {"cold_start_s": 5.0, "load": load, "memory": {"one_worker": memory["one_worker"]}},
                "ours": ours,
            }
        },
    }


def test_targets_are_met_or_flagged_from_the_numbers() -> None:
    good = {t.name: t for t in report.targets(_document(ours_pps=50.0, cold=4.0, added_pct=10.0))}
    assert good["ours/limit at saturation, fp32"].met and good["ours/limit at saturation, fp32"].measured == "1.25"
    assert good["ours/baseline at concurrency 8, int8"].met  # 5.0x >= 4.5x
    assert good["p50 at concurrency 1, fp32"].met  # 100 ms <= 95 + 10 ms
    bad = {t.name: t for t in report.targets(_document(ours_pps=12.0, cold=6.0, added_pct=45.0, forward_ms=80.0))}
    assert not bad["p50 at concurrency 1, bf16"].met  # 100 ms > 80 + 10 ms
    assert not bad["ours/baseline at concurrency 8, fp32"].met  # 1.2x < 1.5x
    assert not bad["cold start (no-archive), bf16"].met and not bad["second worker's PSS, fp32"].met
    assert bad["second worker's PSS, int8"].met is None  # reported only


def test_report_writes_tables_and_plot(tmp_path: Path) -> None:
    document = _document(ours_pps=12.0, cold=6.0, added_pct=45.0)
    raw, picture, page = write_results(document, tmp_path, "cpu-test")
    assert json.loads(raw.read_text()) == document
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert (
        "Test CPU (flags: not listed), 2 cores" in text
        and "2026-11-22" in text
        and "![throughput](cpu-test.png)" in text
    )
    assert "| ours/baseline at concurrency 8, fp32 | >= 1.5x | 1.20x | **no** |" in text


@pytest.mark.integration
def test_a_short_real_run_measures_every_part(tmp_path: Path) -> None:
    """One reduced precision beside the baseline: three TorchServe starts (two cold starts, one interleaved run)."""
    options = BenchOptions(
        workdir=tmp_path,
        models=("tiny",),
        precisions=(Precision.INT8,),
        engines=(EngineName.TORCH, EngineName.OPENVINO),
        duration_s=0.5,
        min_requests=2,
        pairs=16,
        zip_cold_start=False,
        log=lambda line: None,
    )
    document = run_benchmark(options, "test")
    result = document["models"]["tiny"]
    labels = {"int8", "openvino int8"}
    assert set(result["ours"]) == labels and set(result["limit"]) == labels
    assert result["fidelity"]["openvino int8"]["passed"] and result["fidelity"]["int8"]["passed"]
    for server in [result["baseline"], *result["ours"].values()]:
        assert server["cold_start_s"] > 0
        for workload in WORKLOADS:
            load = server["load"][workload.name]
            assert load["failures"] == 0 and load["requests"] >= max(2, workload.concurrency)
    for ours in result["ours"].values():
        assert len(ours["memory"]["two_workers"]) == 2 and ours["memory"]["one_worker"]["pss"] > 0
    assert document["machine"]["cores"] >= 1 and document["settings"]["batch_size"] == 8


def test_engine_targets_cost_and_the_file_name_follow_the_cpu_features(tmp_path: Path) -> None:
    document = _document(ours_pps=12.0, cold=6.0, added_pct=20.0)
    result = document["models"]["large"]
    result["ours"]["openvino fp32"] = dict(result["ours"]["fp32"])
    result["ours"]["openvino bf16"] = json.loads(json.dumps(result["ours"]["bf16"]))
    for workload in result["ours"]["openvino bf16"]["load"].values():
        workload.update(pairs_per_s=70.0, p50_ms=50.0)
    result["limit"]["openvino fp32"] = result["limit"]["openvino bf16"] = result["limit"]["fp32"]
    document["settings"]["usd_per_hour"] = 0.36
    document["machine"]["cpu_flags"] = ["amx_bf16", "avx512_bf16", "avx512_vnni"]
    found = {t.name: t for t in report.targets(document)}
    fastest = found["fastest (openvino bf16) / baseline at concurrency 8, native bf16"]
    assert fastest.measured == "7.00x" and fastest.met  # 70 / 10 >= 6x
    assert fastest.why.startswith("its limit is ") and "served / limit" in fastest.why
    assert "forward pass alone takes" in found["p50 at concurrency 1, fastest (openvino bf16)"].why
    assert found["p50 at concurrency 1, fastest (openvino bf16)"].met  # 50 ms <= 60 ms
    assert not found["openvino fp32 / torch fp32 at saturation (both within 1e-5)"].met  # 1.00x < 1.1x
    document["machine"]["cpu_flags"] = ["avx512_vnni"]
    without = {t.name: t for t in report.targets(document)}
    assert without["fastest (openvino bf16) / baseline at concurrency 8, no native bf16"].goal == ">= 3x"
    assert without["p50 at concurrency 1, fastest (openvino bf16)"].met is None
    # 0.36 $/h at 10 pairs/s = 36,000 pairs per hour: $10 per million.
    assert report.cost_per_million(10.0, 0.36) == pytest.approx(10.0)
    assert "| ours openvino bf16 | $1.43 | $1.43 |" in report.markdown(document)
    assert default_stem({"gpu": None, "cores": 2, "cpu_flags": ["amx_bf16", "avx512_bf16", "avx512_vnni"]}) == (
        "cpu-2core-amx-avx512bf16-vnni"
    )
    assert default_stem({"gpu": None, "cores": 2, "cpu_flags": ["avx2"]}) == "cpu-2core-no-bf16"


def test_batching_sweep_times_every_setting_and_counts_rounded_padding(tiny_encoder: InstructorEncoder) -> None:
    rows = tiny_encoder.tokenize(make_pairs(lambda text: len(text.split()), 16))
    results = batching_sweep.sweep(tiny_encoder, {"8 pairs": [rows[:8], rows[8:16]]}, 0.01)
    settings = {f"padding {p}%, rows {r}" for p in batching_sweep.PADDING_PCTS for r in batching_sweep.ROWS}
    assert set(results["8 pairs"]) == settings
    for entry in results["8 pairs"].values():
        assert len(entry["pairs_per_s"]) == batching_sweep.ROUNDS and min(entry["pairs_per_s"]) > 0
    # Widths round up to 16, so even "no padding" computes padded positions, and fewer passes pad more.
    assert 0 < results["8 pairs"]["padding 0%, rows 8"]["padding_share"] < 1
    one_pass = results["8 pairs"]["padding 100%, rows 32"]
    assert one_pass["forward_passes"] == 2 and one_pass["padding_share"] > 0
    assert tiny_encoder.settings.micro_batch_padding_pct is None  # restored


def test_shape_reuse_times_each_multiple_on_a_fresh_encoder(tiny_model_dir: Path) -> None:
    loaded: list[InstructorEncoder] = []

    def load() -> InstructorEncoder:
        loaded.append(InstructorEncoder.from_folder(tiny_model_dir, EXCLUDE))
        return loaded[-1]

    results = batching_sweep.shape_reuse(load, [1, 16], pairs_count=8)
    assert set(results) == {"multiple 1", "multiple 16"} and len(loaded) == 2
    assert [encoder.limits.length_multiple for encoder in loaded] == [1, 16]
    assert all(entry["batch_1_ms_per_pair"] > 0 and entry["batch_8_pairs_per_s"] > 0 for entry in results.values())


@pytest.mark.integration
def test_overhead_splits_the_served_time(tmp_path: Path, tiny_model_dir: Path) -> None:
    archive = build_archive(
        tiny_model_dir, tmp_path / "store", EXCLUDE, WorkerConfig(), name="ovh", archive_format="no-archive"
    )
    result = overhead.measure(archive, duration_s=1.5, concurrency=4, workdir=tmp_path / "server")
    assert result["load"]["failures"] == 0 and result["load"]["pairs"] >= 4
    assert result["server_batches"] >= 1 and result["limit_pairs_per_s"] > 0
    split = result["ms_per_pair"]
    assert 0 < split["engine (worker, wall)"] <= split["handle (worker, wall)"]
    assert split["frontend (Java) (CPU)"] > 0 and split["worker (Python) (CPU)"] > 0


def test_a_second_run_in_the_same_workdir_relinks_the_store(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "ours", tmp_path / "b" / "ours"
    for folder in (first, second):
        folder.mkdir(parents=True)
    store = link_into_store(tmp_path / "store", [first])
    assert link_into_store(tmp_path / "store", [second]) == store
    assert (store / "ours").resolve() == second.resolve()


def test_the_batching_sweep_names_an_unpacked_archive_by_its_scheme(tmp_path: Path) -> None:
    """``--archive``: engine, precision and the dynamic int8 scheme's group come from the archive itself."""
    folder = tmp_path / "ours"
    (folder / "model" / "openvino").mkdir(parents=True)
    (folder / "model-config.yaml").write_text(
        "handler:\n  engine: openvino\n  precision: int8\n  instruction_mode: ignore\n"
    )
    (folder / "model" / "openvino" / "engine.json").write_text(
        json.dumps({"int8_scheme": "dynamic", "dynamic_quantization_group_size": 64})
    )
    label, variant = batching_sweep.archive_variant(folder)
    assert label == "ours: openvino int8 dynamic (groups of 64)"
    assert variant == (folder / "model", "openvino", "int8", "ignore")
    (folder / "model" / "openvino" / "engine.json").unlink()
    assert batching_sweep.archive_variant(folder)[0] == "ours: openvino int8"
