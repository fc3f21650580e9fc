"""make eval's library code without a server: data checks, metrics, retrieval, cache, reports, download."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import math
import re
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from handler.settings import HandlerSettings
from instructor_client import AuthorizationError
from toolkit.build.archive import build_archive
from toolkit.evaluation.beir_data import document_text, load_beir
from toolkit.evaluation.cli import evaluate_main, evaluate_model
from toolkit.evaluation.download import download_task
from toolkit.evaluation.embedding import ServedEmbedder, VectorCache
from toolkit.evaluation.errors import DataError, DownloadError, ServedModelError
from toolkit.evaluation.metrics import score_run
from toolkit.evaluation.report import ModelResult, build_report, markdown, write_report
from toolkit.evaluation.retrieval import normalized, run_of, top_k_cosine
from toolkit.evaluation.served_model import ServedModel, read_archive
from toolkit.evaluation.tasks import TaskInstructions, resolve_instructions, task_info
from toolkit.serve import server

FIXTURE = Path(__file__).parent / "data" / "beir_fixture"


def copy_fixture(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "data"))


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_on_a_toy_run_equal_hand_computed_values() -> None:
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}}
    run = {"q1": {"d2": 0.9, "d9": 0.8, "d1": 0.7}, "q2": {"d5": 0.9, "d4": 0.5}}
    scores = score_run(qrels, run)
    # q1: d2 (gain 1) at rank 1, d1 (gain 2) at rank 3; the ideal puts d1 first, d2 second.
    ndcg_q1 = (1 / math.log2(2) + 2 / math.log2(4)) / (2 / math.log2(2) + 1 / math.log2(3))
    # q2: its one relevant document at rank 2.
    ndcg_q2 = (1 / math.log2(3)) / (1 / math.log2(2))
    assert scores.per_query["q1"]["ndcg_at_10"] == pytest.approx(ndcg_q1, abs=1e-9)
    assert scores.per_query["q2"]["ndcg_at_10"] == pytest.approx(ndcg_q2, abs=1e-9)
    assert scores.per_query["q1"]["mrr_at_10"] == 1.0 and scores.per_query["q2"]["mrr_at_10"] == 0.5
    assert scores.per_query["q1"]["recall_at_100"] == 1.0 and scores.per_query["q2"]["recall_at_100"] == 1.0
    assert scores.mean["ndcg_at_10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-9)
    assert scores.mean["mrr_at_10"] == pytest.approx(0.75)


def test_cutoffs_and_missing_queries() -> None:
    """A relevant document at rank 11 counts for Recall@100 only; a query without results scores 0."""
    qrels = {"q1": {"hit": 1, "never": 1}, "q2": {"x": 1}}
    run = {"q1": {f"miss{i}": 1.0 - i / 100 for i in range(10)} | {"hit": 0.5}}
    scores = score_run(qrels, run)
    assert scores.per_query["q1"] == {"ndcg_at_10": 0.0, "recall_at_100": 0.5, "mrr_at_10": 0.0}
    assert scores.per_query["q2"] == {"ndcg_at_10": 0.0, "recall_at_100": 0.0, "mrr_at_10": 0.0}


# --- retrieval ---------------------------------------------------------------------------------


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int, excluded: np.ndarray | None) -> np.ndarray:
    scores = normalized(queries) @ normalized(corpus).T
    if excluded is not None:
        for row, column in enumerate(excluded):
            if column >= 0:
                scores[row, column] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize(("query_chunk", "corpus_chunk"), [(1024, 16384), (7, 50), (1, 1)])
def test_chunked_top_k_equals_brute_force(query_chunk: int, corpus_chunk: int) -> None:
    rng = np.random.default_rng(12)
    queries = rng.standard_normal((23, 16)).astype(np.float32)
    corpus = rng.standard_normal((400, 16)).astype(np.float32) * rng.uniform(0.1, 5, (400, 1)).astype(np.float32)
    excluded = rng.integers(-1, 400, 23)
    ranking = top_k_cosine(queries, corpus, 10, excluded, query_chunk=query_chunk, corpus_chunk=corpus_chunk)
    assert np.array_equal(ranking.indices, brute_force(queries, corpus, 10, excluded))
    assert ranking.scores.dtype == np.float32
    assert np.all(np.diff(ranking.scores, axis=1) <= 0)


def test_fewer_documents_than_k_and_self_exclusion() -> None:
    corpus = np.eye(3, dtype=np.float32)
    ranking = top_k_cosine(corpus.copy(), corpus, k=100, excluded=np.array([0, -1, 2]))
    assert ranking.indices.shape == (3, 3)
    assert ranking.indices[0, 0] != 0 and ranking.indices[0, -1] == -1
    assert ranking.indices[1, 0] == 1
    run = run_of(ranking, ["a", "b", "c"], ["a", "b", "c"])
    assert "a" not in run["a"] and "c" not in run["c"] and len(run["b"]) == 3


# --- tasks and instructions --------------------------------------------------------------------


def test_instructor_instructions_built_in_and_overridable() -> None:
    xl = resolve_instructions("scifact")
    assert xl.query == "Represent the Scientific queries for retrieving a supporting passage: "
    assert resolve_instructions("SciFact", "instructor-base").query.startswith("Represent a Scientific query")
    overridden = resolve_instructions("scifact", query="Q: ")
    assert overridden == TaskInstructions(query="Q: ", corpus=xl.corpus)
    assert resolve_instructions("scifact", "none") == TaskInstructions()
    assert resolve_instructions(None) == TaskInstructions()
    with pytest.raises(ValueError, match="unknown instruction set"):
        resolve_instructions("scifact", "instructor-huge")


def test_self_exclusion_where_mteb_does_it() -> None:
    assert task_info("arguana").exclude_self and task_info("QuoraRetrieval").exclude_self
    assert not task_info("scifact").exclude_self
    assert task_info("my-own-data") is None


# --- BEIR data ---------------------------------------------------------------------------------


def test_fixture_loads_with_titles_joined() -> None:
    dataset = load_beir(FIXTURE)
    assert len(dataset.corpus_ids) == 48 and len(dataset.query_ids) == 16 and dataset.unjudged_queries == 1
    assert "q17" not in dataset.query_ids
    assert dataset.corpus_texts[0].startswith("Black holes A black hole is")
    assert {score for docs in dataset.qrels.values() for score in docs.values()} == {0, 1, 2}
    assert document_text("", "  text ") == "text" and document_text("T", "x") == "T x"


def rewrite_line(path: Path, number: int, content: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = content
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: shutil.rmtree(d / "qrels"), r"qrels/test\.tsv: missing \(qrels found: none\)"),
        (lambda d: rewrite_line(d / "corpus.jsonl", 5, '{"_id": "x", "text": '), r"corpus\.jsonl:5: not valid JSON"),
        (lambda d: rewrite_line(d / "queries.jsonl", 3, '["q03"]'), r"queries\.jsonl:3: each line must be a JSON"),
        (
            lambda d: rewrite_line(d / "corpus.jsonl", 2, '{"_id": "astro-1", "text": "again"}'),
            r"corpus\.jsonl:2: dupl",
        ),
        (
            lambda d: rewrite_line(d / "corpus.jsonl", 7, '{"_id": "z", "title": 3, "text": "t"}'),
            r"corpus\.jsonl:7: .*'title'",
        ),
        (
            lambda d: rewrite_line(d / "corpus.jsonl", 8, '{"_id": "z", "title": "", "text": " "}'),
            r"corpus\.jsonl:8: 'z' has no",
        ),
        (lambda d: rewrite_line(d / "qrels" / "test.tsv", 4, "q99\tastro-1\t1"), r"test\.tsv:4: query 'q99' is not in"),
        (
            lambda d: rewrite_line(d / "qrels" / "test.tsv", 6, "q02\tnope\t1"),
            r"test\.tsv:6: document 'nope' is not in",
        ),
        (lambda d: rewrite_line(d / "qrels" / "test.tsv", 9, "q03\tbake-1\thigh"), r"test\.tsv:9: score must be an"),
        (
            lambda d: rewrite_line(d / "qrels" / "test.tsv", 2, "q01 astro-1 2"),
            r"test\.tsv:2: expected 3 tab-separated",
        ),
        (lambda d: (d / "corpus.jsonl").write_text(""), r"corpus\.jsonl: no documents: the file is empty"),
        (lambda d: (d / "corpus.jsonl").write_bytes(b'{"_id": "a", "text": "\xff"}\n'), r"corpus\.jsonl:1: not UTF-8"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, edit, message: str) -> None:
    data = copy_fixture(tmp_path)
    edit(data)
    with pytest.raises(DataError, match=message):
        load_beir(data)


def test_bad_input_writes_no_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The data is checked before anything else: the CLI exits 1 naming file and line, writes nothing."""
    data = copy_fixture(tmp_path)
    rewrite_line(data / "qrels" / "test.tsv", 4, "q01\tghost\t1")
    output = tmp_path / "reports"
    code = evaluate_main([str(data), "--output", str(output), "--workdir", str(tmp_path / "no-server")])
    assert code == 1
    assert re.search(r"error: .*test\.tsv:4: document 'ghost' is not in corpus\.jsonl", capsys.readouterr().err)
    assert not output.exists()


def test_no_server_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate_main([str(FIXTURE), "--output", str(tmp_path / "r"), "--workdir", str(tmp_path)])
    assert code == 1 and "config.properties not found: start the server with make serve" in capsys.readouterr().err


# --- served model identity and the vector cache ------------------------------------------------


def write_fake_archive(path: Path, precision: str, created: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps({"createdOn": created}))
        archive.writestr(
            "model-config.yaml", f"minWorkers: 1\nhandler:\n  instruction_mode: ignore\n  precision: {precision}\n"
        )
        archive.writestr("model/1_Pooling/config.json", json.dumps({"pooling_mode_cls_token": True}))
    return path


def test_archive_identity_and_cache_key(tmp_path: Path) -> None:
    write_fake_archive(tmp_path / "m.mar", "int8", "23/11/2026 10:00:00")
    model = read_archive("m", "m.mar", tmp_path)
    assert (model.precision, model.instruction_mode, model.pooling) == ("int8", "ignore", "cls_token")
    write_fake_archive(tmp_path / "m.mar", "int8", "23/11/2026 10:00:01")  # rebuilt
    assert read_archive("m", "m.mar", tmp_path).cache_key != model.cache_key
    (tmp_path / "folder" / "MAR-INF").mkdir(parents=True)
    (tmp_path / "folder" / "MAR-INF" / "MANIFEST.json").write_text("{}")
    (tmp_path / "folder" / "model-config.yaml").write_text("handler:\n  precision: bf16\n")
    assert read_archive("folder", "folder", tmp_path).precision == "bf16"


def test_archive_identity_from_a_tgz(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "MAR-INF").mkdir(parents=True)
    (folder / "MAR-INF" / "MANIFEST.json").write_text("{}")
    (folder / "model-config.yaml").write_text("handler:\n  precision: int8\n  instruction_mode: exclude\n")
    with tarfile.open(tmp_path / "m.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname="m")
    model = read_archive("m", "m.tar.gz", tmp_path)
    assert (model.precision, model.instruction_mode, model.pooling) == ("int8", "exclude", "unknown")


def test_unreadable_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServedModelError, match="which is not in the model store"):
        read_archive("m", "absent.mar", tmp_path)
    (tmp_path / "bad.mar").write_bytes(b"junk")
    with pytest.raises(ServedModelError, match=re.escape("neither a .mar (zip)")):
        read_archive("bad", "bad.mar", tmp_path)


class FakeClient:
    """Deterministic vectors from the text; counts the pairs it was asked for."""

    def __init__(self, calls: list[int], fail_auth_once: list[bool] | None = None) -> None:
        self.calls = calls
        self.fail_auth_once = fail_auth_once

    def embed(self, pairs: list[tuple[str, str]]) -> list[list[float]]:
        if self.fail_auth_once:
            self.fail_auth_once.pop()
            raise AuthorizationError(400, "Token Authorization failed")
        self.calls.append(len(pairs))
        return [[float(len(text)), float(len(instruction)), 1.0] for instruction, text in pairs]


def model_named(fingerprint: str) -> ServedModel:
    return ServedModel("m", "m.mar", fingerprint, "fp32", "ignore", "mean_tokens")


def test_cache_reuses_vectors_per_model_archive_precision(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(1100)]
    calls: list[int] = []

    def embedder(fingerprint: str) -> ServedEmbedder:
        model = model_named(fingerprint)
        return ServedEmbedder(model, lambda: FakeClient(calls), VectorCache(tmp_path, model), progress=False)

    first = embedder("a").embed(texts, "I: ", "corpus")
    assert first.shape == (1100, 3) and first.dtype == np.float32 and sum(calls) == 1100
    again = embedder("a")
    assert np.array_equal(again.embed(texts, "I: ", "corpus"), first) and sum(calls) == 1100
    assert (again.cached_rows, again.embedded_rows) == (1100, 0)
    embedder("a").embed(texts, "other instruction: ", "corpus")
    embedder("b").embed(texts, "I: ", "corpus")  # a rebuilt archive never reuses vectors
    assert sum(calls) == 3300
    assert not list(tmp_path.rglob("*.part"))


def test_expired_key_is_renewed_once(tmp_path: Path) -> None:
    calls: list[int] = []
    renewed: list[bool] = []
    model = model_named("a")
    embedder = ServedEmbedder(
        model,
        lambda: FakeClient(calls, fail_auth_once=[True]),
        VectorCache(None, model),
        renew_key=lambda: renewed.append(True),
        concurrency=1,
        progress=False,
    )
    assert embedder.embed(["x"], "", "queries").shape == (1, 3)
    assert renewed == [True] and calls == [1]


@pytest.mark.parametrize("exclude_self", [True, False])
def test_a_query_that_is_also_a_document_is_excluded_only_when_asked(tmp_path: Path, exclude_self: bool) -> None:
    """ArguAna's queries are corpus documents; MTEB drops the identical id from each query's results."""
    data = tmp_path / "arguana"
    (data / "qrels").mkdir(parents=True)
    texts = {"a1": "short", "a2": "a longer argument", "a3": "the longest argument of all here"}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in texts.items()))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "a2", "text": texts["a2"]}) + "\n")
    (data / "qrels" / "test.tsv").write_text("a2\ta3\t1\n")
    calls: list[int] = []
    model = model_named("a")
    embedder = ServedEmbedder(model, lambda: FakeClient(calls), VectorCache(None, model), progress=False)
    result = evaluate_model(load_beir(data), embedder, TaskInstructions(), exclude_self, top_k=10)
    # FakeClient's vectors: a text's own vector is its best match, so only exclusion puts a3 first.
    assert result.scores.per_query["a2"]["mrr_at_10"] == (1.0 if exclude_self else 0.5)


# --- report ------------------------------------------------------------------------------------


def test_report_json_and_markdown(tmp_path: Path) -> None:
    dataset = load_beir(FIXTURE)
    scores = score_run(dataset.qrels, {q: dict.fromkeys(docs, 1.0) for q, docs in dataset.qrels.items()})
    results = [
        ModelResult(model_named("a"), scores, {"embed_corpus": 1.0}, {"embedded": 48, "cached": 0}),
        ModelResult(
            model_named("b"), score_run(dataset.qrels, {}), {"embed_corpus": 1.0}, {"embedded": 0, "cached": 48}
        ),
    ]
    report = build_report(
        dataset, task_info("scifact"), TaskInstructions("q: ", "d: "), "instructor-xl", False, 100, results
    )
    json_path, md_path = write_report(report, tmp_path, "scifact-test-a-b")
    saved = json.loads(json_path.read_text())
    assert saved["models"][1]["difference_to_first"]["ndcg_at_10"] == pytest.approx(
        -saved["models"][0]["metrics"]["ndcg_at_10"]
    )
    assert saved["published_ndcg_at_10"]["figures_x100"] == {"instructor-base": 57.83, "instructor-xl": 64.56}
    text = md_path.read_text()
    assert (
        "| model | archive | precision | pooling | instructions | nDCG@10 | Δ |" in text
        and "instructor-xl 64.56" in text
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scifact-test-a-b.json", "scifact-test-a-b.md"]


# --- download ----------------------------------------------------------------------------------


def zipped_fixture(extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in FIXTURE.rglob("*"):
            if path.is_file():
                archive.write(path, f"scifact/{path.relative_to(FIXTURE)}")
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


@contextlib.contextmanager
def http_server(files: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server answering GET /NAME with ``files[NAME]`` (404 otherwise)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/beir"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_from_a_local_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with http_server({"beir/scifact.zip": zipped_fixture()}) as url:
        code = evaluate_main(
            ["--download", "scifact", "--download-only", "--data-dir", str(tmp_path), "--download-url", url]
        )
    assert code == 0 and f"BEIR scifact: {tmp_path / 'scifact'}" in capsys.readouterr().out
    assert len(load_beir(tmp_path / "scifact").corpus_ids) == 48
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scifact"]
    assert download_task("scifact", tmp_path, "http://127.0.0.1:9") == tmp_path / "scifact"  # already there


def test_download_offline_is_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{server.free_port()}"
    code = evaluate_main(["--download", "nfcorpus", "--data-dir", str(tmp_path), "--download-url", closed])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot reach {closed}/nfcorpus.zip" in err and "offline" in err and f"unzip it into {tmp_path}" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "answered HTTP 404"),
        ({"beir/scifact.zip": b"not a zip"}, "not a valid zip"),
        ({"beir/scifact.zip": zipped_fixture({"../evil.txt": b"x"})}, "would unpack outside"),
    ],
)
def test_download_failures_leave_nothing(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    with http_server(files) as url, pytest.raises(DownloadError, match=message):
        download_task("scifact", tmp_path / "data", url)
    assert list((tmp_path / "data").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_download_refuses_unknown_tasks(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unknown BEIR task"):
        download_task("../etc", tmp_path, "http://127.0.0.1:9")


def test_partial_download_is_not_taken_for_data(tmp_path: Path) -> None:
    (tmp_path / "scifact").mkdir()
    with pytest.raises(DownloadError, match=re.escape("exists but holds no corpus.jsonl")):
        download_task("scifact", tmp_path, "http://127.0.0.1:9")


def test_the_report_shows_the_archives_gate_figures(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A gated archive's cosine and ranking figures reach make eval's report, beside its retrieval scores."""
    settings = HandlerSettings.from_mapping({"instruction_mode": "exclude", "precision": "bf16"})
    build_archive(tiny_model_dir, tmp_path, settings, name="gated")
    model = read_archive("gated", "gated.mar", tmp_path)
    assert model.gate is not None and model.gate["verdict"] == "passed"
    assert 0.0 <= model.gate["ndcg_at_10"] <= 1.0 and model.gate["min_cosine"] >= 0.999
    dataset = load_beir(FIXTURE)
    scores = score_run(dataset.qrels, {})
    report = build_report(
        dataset,
        None,
        TaskInstructions("q: ", "d: "),
        "custom",
        False,
        10,
        [ModelResult(model, scores, {"embed_corpus": 1.0}, {"embedded": 0, "cached": 0})],
    )
    assert f"nDCG@10 {model.gate['ndcg_at_10']:.4f} against fp32's ranking" in markdown(report)
