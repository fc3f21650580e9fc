"""``python -m toolkit embed``: reading, splitting, shards and resuming; then a real server, killed and resumed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructor_client import InstructorClient, InvalidRequestError
from tests.conftest import EXCLUDE, REPO_ROOT, RunningServer, registered_model
from toolkit.build.archive import WorkerConfig, build_archive
from toolkit.corpus.job import PROBE_PAIR, EmbedJob, JobError, JobOptions
from toolkit.corpus.reading import Columns, CorpusError, Document, corpus_format, read_documents
from toolkit.corpus.shards import OutputFolder, read_vectors
from toolkit.corpus.splitting import Splitter

RECORDS = [{"id": "a", "text": "first doc"}, {"id": "b", "text": "second doc", "task": "Represent:"}, {"text": "no id"}]


def write_corpus(path: Path, format_name: str) -> Path:
    if format_name == "jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in RECORDS))
    elif format_name == "csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text", "task"])
            writer.writeheader()
            writer.writerows(RECORDS)
    elif format_name == "parquet":
        columns = {key: [record.get(key) for record in RECORDS] for key in ("id", "text", "task")}
        pq.write_table(pa.table(columns), path)
    else:
        path.write_text("".join(record["text"] + "\n" for record in RECORDS))
    return path


@pytest.mark.parametrize("format_name", ["jsonl", "csv", "parquet", "txt"])
def test_every_format_reads_ids_texts_and_instructions(tmp_path: Path, format_name: str) -> None:
    path = write_corpus(tmp_path / f"corpus.{format_name}", format_name)
    documents = list(read_documents(path, corpus_format(path), Columns(instruction="task")))
    assert [document.text for document in documents] == ["first doc", "second doc", "no id"]
    if format_name == "txt":
        assert [document.id for document in documents] == ["0", "1", "2"]
        return
    # A row without an id (or an empty CSV cell) falls back to its row number.
    assert [document.id for document in documents][:2] == ["a", "b"]
    assert documents[1].instruction == "Represent:"
    assert documents[2].id in ("2", "")


def test_a_missing_text_column_names_the_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": 1, "body": "x"}\n')
    with pytest.raises(CorpusError, match=r"corpus.jsonl:1: no 'text' field"):
        list(read_documents(path, "jsonl", Columns()))
    with pytest.raises(CorpusError, match="cannot tell the format"):
        corpus_format(tmp_path / "corpus.xlsx")


def test_chunks_keep_their_document_offsets_and_overlap() -> None:
    text = " ".join(f"w{n}" for n in range(10))
    chunks = list(Splitter(max_tokens=4, overlap=1).split(Document("d", text)))
    assert [chunk.text for chunk in chunks] == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert all(text[chunk.start : chunk.end] == chunk.text for chunk in chunks)
    assert [chunk.chunk for chunk in chunks] == [0, 1, 2] and {chunk.id for chunk in chunks} == {"d"}
    assert next(iter(Splitter(max_tokens=20).split(Document("d", text)))).text == text
    (odd,) = Splitter(max_tokens=2).split(Document("d", 42))
    assert odd.text == 42  # not text: passed on for the server to refuse
    with pytest.raises(ValueError, match="overlap"):
        Splitter(max_tokens=2, overlap=2)


class FakeClient:
    """Vectors ``[len(text), 1.0]``; an empty text is refused as the server refuses it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def embed_chunk(self, pairs: list[tuple[str, object]]) -> list[list[float]]:
        if any(not isinstance(text, str) or not text for _, text in pairs):
            raise InvalidRequestError(400, "inputs[0][1] (text) must not be empty or only whitespace")
        self.sent.extend(text for _, text in pairs)
        return [[float(len(text)), 1.0] for _, text in pairs]


def fake_job(tmp_path: Path, client: FakeClient, version: str = "1.0", rows: int = 50) -> EmbedJob:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("".join(("" if n % 10 == 3 else f"text {n}") + "\n" for n in range(rows)))
    describe = mock.Mock(return_value={"modelName": "m", "modelVersion": version, "customizedMetadata": {}})
    options = JobOptions(corpus, "txt", shard_rows=8, batch_pairs=4)
    return EmbedJob(client, describe, OutputFolder(tmp_path / "out"), options, concurrency=2)  # type: ignore[arg-type]


def test_bad_rows_go_to_the_errors_file_and_every_good_row_is_embedded(tmp_path: Path) -> None:
    client = FakeClient()
    manifest = fake_job(tmp_path, client).run()
    table = read_vectors(tmp_path / "out")
    refused = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert [row["id"] for row in refused] == ["3", "13", "23", "33", "43"]
    assert all(row["status"] == 400 and "must not be empty" in row["message"] for row in refused)
    assert table.column("id").to_pylist() == [str(n) for n in range(50) if n % 10 != 3]
    assert table.column("embedding").type == pa.list_(pa.float32(), 2)
    assert manifest["counts"] == {"rows": 50, "embedded": 45, "refused": 5} and manifest["complete"]


def test_a_rerun_embeds_only_the_missing_shards(tmp_path: Path) -> None:
    first = FakeClient()
    fake_job(tmp_path, first).run()
    for shard in (2, 5):
        (tmp_path / "out" / "shards" / f"part-{shard:05d}.parquet").unlink()  # as if the job died before them
    again = FakeClient()
    manifest = fake_job(tmp_path, again).run()
    resent = sorted(text for text in again.sent if text != PROBE_PAIR[1])
    assert resent == sorted(f"text {n}" for n in [*range(16, 24), *range(40, 48)] if n % 10 != 3)
    assert manifest["counts"]["embedded"] == 45
    assert read_vectors(tmp_path / "out").num_rows == 45


def test_a_rerun_against_another_model_is_refused_unless_restarted(tmp_path: Path) -> None:
    fake_job(tmp_path, FakeClient()).run()
    with pytest.raises(JobError, match="pass --restart"):
        fake_job(tmp_path, FakeClient(), version="2").run()
    manifest = fake_job(tmp_path, FakeClient(), version="2").run(restart=True)
    assert manifest["model"]["version"] == "2"


def test_a_model_switched_during_the_job_stops_it_before_a_mixed_shard(tmp_path: Path) -> None:
    job = fake_job(tmp_path, FakeClient())
    versions = iter(["1.0", "1.0", "1.0", "2"])
    job.describe = lambda: {"modelName": "m", "modelVersion": next(versions), "customizedMetadata": {}}
    with pytest.raises(JobError, match="changed while shard 2"):
        job.run()
    assert sorted(path.name for path in (tmp_path / "out" / "shards").glob("*.parquet")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]


# ---- against a real TorchServe ----

CORPUS_ROWS = 3000
BAD = {7: "", 250: "   ", 1203: 17, 2222: None}
LONG_ROW = 1500


@pytest.fixture(scope="module")
def corpus_server(torchserve: RunningServer, tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The tiny model registered on the shared server as ``corpus``, and the same model again as ``corpus2``."""
    for name in ("corpus", "corpus2"):
        build_archive(tiny_model_dir, torchserve.model_store, EXCLUDE, WorkerConfig(response_timeout_s=120), name=name)
    with (
        registered_model(torchserve, "corpus.mar", "corpus"),
        registered_model(torchserve, "corpus2.mar", "corpus2"),
    ):
        yield torchserve


def big_corpus(path: Path) -> Path:
    lines = []
    for n in range(CORPUS_ROWS):
        text: object = f"Document {n}: notes on topic {n % 37} and the measurement {n * 7 % 101}."
        if n == LONG_ROW:
            text = " ".join(f"word{k}" for k in range(2000))  # over max_length: refused with --no-truncate
        lines.append(json.dumps({"doc_id": f"d{n}", "body": BAD.get(n, text)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def embed_command(running: RunningServer, corpus: Path, out: Path, name: str = "corpus") -> list[str]:
    return [
        sys.executable,
        "-m",
        "toolkit",
        "embed",
        str(corpus),
        str(out),
        "--id-column",
        "doc_id",
        "--text-column",
        "body",
        "--instruction",
        "Represent the note: ",
        "--no-truncate",
        "--shard-rows",
        "200",
        "--quiet",
        "--url",
        running.inference_url,
        "--management-url",
        running.management_url,
        "--key-file",
        str(running.layout.key_file),
        "--name",
        name,
    ]


@pytest.mark.integration
def test_embed_a_corpus_killed_part_way_and_resumed(corpus_server: RunningServer, tmp_path: Path) -> None:
    corpus, out = big_corpus(tmp_path / "corpus.jsonl"), tmp_path / "out"

    def start_and_stop_after(shards: int, stop: signal.Signals) -> subprocess.Popen[bytes]:
        job = subprocess.Popen(embed_command(corpus_server, corpus, out), cwd=REPO_ROOT, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while len(list((out / "shards").glob("part-*.parquet"))) < shards and job.poll() is None:
            assert time.monotonic() < deadline, f"{shards} shards not written in 300 s"
            time.sleep(0.05)
        os.kill(job.pid, stop)
        job.wait(timeout=120)
        return job

    interrupted = start_and_stop_after(1, signal.SIGINT)  # Ctrl-C
    assert interrupted.returncode == 130, interrupted.stderr.read() if interrupted.stderr else ""
    assert interrupted.stderr is not None and b"run the same command again" in interrupted.stderr.read()
    start_and_stop_after(3, signal.SIGKILL)  # a crash: nothing is flushed or cleaned up
    written = len(list((out / "shards").glob("part-*.parquet")))
    assert 3 <= written < CORPUS_ROWS // 200, "the job finished before it could be killed"
    resumed = subprocess.run(embed_command(corpus_server, corpus, out), cwd=REPO_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    table = read_vectors(out)
    bad = {f"d{n}" for n in [*BAD, LONG_ROW]}
    good = [f"d{n}" for n in range(CORPUS_ROWS) if f"d{n}" not in bad]
    assert table.column("id").to_pylist() == good, "a row lost, repeated or out of order"
    refused = {json.loads(line)["id"]: json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()}
    assert set(refused) == bad
    assert "must not be empty" in refused["d7"]["message"] and "must be a string" in refused["d1203"]["message"]
    assert refused[f"d{LONG_ROW}"]["status"] == 413 and "truncation is off" in refused[f"d{LONG_ROW}"]["message"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"rows": CORPUS_ROWS, "embedded": len(good), "refused": len(bad)}
    assert (
        manifest["model"]["name"] == "corpus"
        and manifest["model"]["dimensions"] == table.column("embedding").type.list_size
    )
    # The same rows through the client, as a user would embed them.
    sample = [0, 1, 2, 199, 200, 201, 999, table.num_rows - 1]
    texts = [table.column("text")[index].as_py() for index in sample]
    client = InstructorClient(corpus_server.inference_url, "corpus", key_file=corpus_server.layout.key_file)
    expected = client.embed_texts(texts, "Represent the note: ")
    for index, vector in zip(sample, expected, strict=True):
        stored = table.column("embedding")[index].as_py()
        assert max(abs(a - b) for a, b in zip(stored, vector, strict=True)) <= 1e-5
    other = subprocess.run(
        embed_command(corpus_server, corpus, out, name="corpus2"), cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert other.returncode == 1 and "pass --restart" in other.stderr


def test_the_sample_corpus_mixes_in_each_kind_of_bad_row(tmp_path: Path) -> None:
    from toolkit.corpus.sample import sample_rows, write_sample_corpus

    rows = sample_rows(30, bad_every=10)
    bad = [rows[n]["text"] for n in (9, 19, 29)]
    assert bad[0] == "" and bad[1] == 12345 and len(str(bad[2]).split()) == 600
    assert len({row["id"] for row in rows}) == 30 and all(isinstance(row["text"], str) for row in sample_rows(30))
    path = write_sample_corpus(tmp_path / "corpus.jsonl", 30, bad_every=10)
    assert [document.id for document in read_documents(path, "jsonl", Columns())][:2] == ["doc-0", "doc-1"]


def test_soak_growth_compares_the_settled_start_with_the_end() -> None:
    from toolkit.bench.soak import growth

    samples = [900.0] * 5 + [500.0] * 10 + [520.0] * 10  # warm-up first, then settled and a slow rise
    assert growth(samples, warmup=5) == round(520 / 500 - 1, 4)
