"""Goodput under overload: what the server answers when offered 2x and 4x what it can serve.

``python -m toolkit.bench.overload ARCHIVE [SECONDS] [FACTORS] [shared]`` (a built archive, e.g.
``model_store/instructor.mar`` from ``make archive``) starts a scratch TorchServe, measures its
capacity (closed loop, enough clients to keep the worker's batches full), then offers single-text
requests at ``factor x capacity`` (open loop: arrivals do not wait for answers) with two clients:

- ``instructor_client``: the project's client (backs off exponentially on 503, 4 retries);
- ``retry_at_once``: a client that resends the moment it gets a 503 (the reviewer's 256 clients).

Each arrival is a job with a deadline of 10 s; goodput is jobs answered 200 per second (from the
first arrival to the last answer), beside the 503s the server sent and the latency of the jobs
answered. The load generator shares the machine's
cores with the server unless they are split: by default TorchServe runs on the first half of this
process's cores, the load generator on the other half (both reported, with the generator's CPU
time); ``shared`` puts both on every core, as a load test on the serving machine would.
Writes JSON to stdout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests

from handler.precision import REPORTED_CPU_FLAGS, cpu_flags, cpu_model
from instructor_client import InstructorClient, InstructorError
from toolkit.bench.load import run_load
from toolkit.serve.scratch_server import RunningServer, running_server

JOB_DEADLINE_S = 10.0
CAPACITY_CLIENTS = 32
MAX_THREADS = 1024
TEXT = "How do I bake sourdough bread at home without a starter?"


@dataclasses.dataclass
class Tally:
    """What an open-loop run saw."""

    offered: int = 0
    answered: int = 0
    refused_503: int = 0
    failed: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    started: float = 0.0
    last_answer: float = 0.0

    def summary(self, seconds: float) -> dict[str, Any]:
        """Goodput: jobs answered 200 over the time from the first arrival to the last answer."""
        latencies = np.asarray(self.latencies) if self.latencies else np.asarray([float("nan")])
        answering = max(self.last_answer - self.started, 1e-9)
        return {
            "offered_per_s": round(self.offered / seconds, 1),
            "goodput_per_s": round(self.answered / answering, 1),
            "answering_s": round(answering, 1),
            "answered": self.answered,
            "failed_jobs": self.failed,
            "503_sent": self.refused_503,
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        }


_THREAD = threading.local()


def _counting_session(tally: Tally) -> requests.Session:
    """This generator thread's session (kept alive across jobs), counting every 503 into ``tally``."""
    session = getattr(_THREAD, "session", None)
    if session is None:
        session = _THREAD.session = requests.Session()
        session.hooks["response"].append(_count_503)
    _THREAD.tally = tally
    return session


def _count_503(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
    if response.status_code == 503:
        with _THREAD.tally.lock:
            _THREAD.tally.refused_503 += 1


def open_loop(job: Any, rate: float, seconds: float) -> Tally:
    """Start ``job(tally, arrival)`` at ``rate`` per second for ``seconds``; wait for every job to finish.

    A job's deadline and latency count from its arrival, so time it waits for a generator thread counts.
    """
    tally = Tally()
    with ThreadPoolExecutor(MAX_THREADS) as pool:
        started = tally.started = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tally.offered += 1
            pool.submit(job, tally, time.perf_counter())
    return tally


def measure(archive: Path, seconds: float, factors: tuple[float, ...], split_cores: bool = True) -> dict[str, Any]:
    """Capacity, then goodput at each factor with each client; server and load on separate cores unless not split."""
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    server_cores, load_cores = set(cores[:half]), set(cores[half:] or cores)
    if not split_cores:
        server_cores = load_cores = set(cores)
    results: dict[str, Any] = {
        "cpu": cpu_model(),
        "flags": sorted(cpu_flags() & set(REPORTED_CPU_FLAGS)),
        "server_cores": sorted(server_cores),
        "load_generator_cores": sorted(load_cores),
        "archive": str(archive),
        "seconds": seconds,
        "job_deadline_s": JOB_DEADLINE_S,
    }
    with tempfile.TemporaryDirectory(prefix="overload-") as workdir, contextlib.ExitStack() as stack:
        # TorchServe (frontend and workers) inherits the cores it is started on; the load gets the others.
        os.sched_setaffinity(0, server_cores)
        server = stack.enter_context(running_server(Path(workdir), archive.parent))
        os.sched_setaffinity(0, load_cores)
        server.management.register(archive.name, initial_workers=1)
        results |= _runs(server, archive.name.removesuffix(".mar"), seconds, factors)
    return results


def _runs(server: RunningServer, name: str, seconds: float, factors: tuple[float, ...]) -> dict[str, Any]:
    url = f"{server.inference_url}/predictions/{name}"
    headers = {"Authorization": f"Bearer {server.keys().inference}"}
    body = {"inputs": [["", TEXT]]}
    run_load(url, headers, [body], CAPACITY_CLIENTS, 2.0, CAPACITY_CLIENTS)  # warm up
    capacity = run_load(url, headers, [body], CAPACITY_CLIENTS, seconds, CAPACITY_CLIENTS)
    capacity_per_s = capacity.requests / capacity.elapsed_s
    results: dict[str, Any] = {"capacity": {"clients": CAPACITY_CLIENTS, "requests_per_s": round(capacity_per_s, 1)}}
    key_file = server.layout.key_file

    def ours(tally: Tally, sent: float) -> None:
        session = _counting_session(tally)
        client = InstructorClient(
            server.inference_url, name, key_file=key_file, timeout_s=JOB_DEADLINE_S, session=session
        )
        try:
            client.embed_texts([TEXT])
            ok = time.perf_counter() - sent <= JOB_DEADLINE_S
        except InstructorError:
            ok = False
        _record(tally, ok, time.perf_counter() - sent)

    def at_once(tally: Tally, sent: float) -> None:
        session = _counting_session(tally)
        ok = False
        while not ok and time.perf_counter() - sent < JOB_DEADLINE_S:
            try:
                ok = session.post(url, json=body, headers=headers, timeout=JOB_DEADLINE_S).status_code == 200
            except requests.RequestException:
                break
        _record(tally, ok and time.perf_counter() - sent <= JOB_DEADLINE_S, time.perf_counter() - sent)

    process = psutil.Process()
    for factor in factors:
        for label, job in (("instructor_client", ours), ("retry_at_once", at_once)):
            cpu_before = process.cpu_times()
            tally = open_loop(job, factor * capacity_per_s, seconds)
            cpu_after = process.cpu_times()
            summary = tally.summary(seconds)
            summary["goodput_of_capacity"] = round(summary["goodput_per_s"] / capacity_per_s, 3)
            load_cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
            summary["load_generator_cpu_s"] = round(load_cpu, 1)
            results[f"{factor:g}x/{label}"] = summary
            time.sleep(2.0)  # let the queue drain before the next run
    return results


def _record(tally: Tally, ok: bool, took: float) -> None:
    with tally.lock:
        if ok:
            tally.answered += 1
            tally.latencies.append(took)
            tally.last_answer = max(tally.last_answer, time.perf_counter())
        else:
            tally.failed += 1


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    seconds = float(argv[1]) if len(argv) > 1 else 10.0
    factors = tuple(float(value) for value in argv[2].split(",")) if len(argv) > 2 else (2.0, 4.0)
    split = not (len(argv) > 3 and argv[3] == "shared")
    print(json.dumps(measure(Path(argv[0]).resolve(), seconds, factors, split), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
