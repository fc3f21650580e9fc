"""Turn a benchmark document (runner.run_benchmark) into Markdown tables, target checks and a plot."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

SATURATION = "1 pair, concurrency 32"
CONCURRENCY_8 = "1 pair, concurrency 8"
CONCURRENCY_1 = "1 pair, concurrency 1"
TARGET_MODEL = "large"
BASELINE_RATIO_GOALS = {"fp32": 1.5, "bf16": 4.0, "int8": 4.5}
SECOND_WORKER_GOAL_PCT = 30.0
LIMIT_RATIO_GOAL = 0.90
LATENCY_SLACK_MS = 10.0
# The engines issue's targets for the fastest mode (instructor-large shape, single-pair requests).
FASTEST_VS_BASELINE_GOAL = {"native bf16": 6.0, "no native bf16": 3.0}
FASTEST_P50_GOAL_MS = 60.0
FP32_ENGINE_GOAL = 1.1
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the performance issue, as measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: reported only
    why: str = ""  # what the numbers say about a miss (the raw limit, the forward pass alone)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def targets(document: dict[str, Any], model: str = TARGET_MODEL) -> list[Target]:
    """The issue's targets for ``model`` (instructor-large's shape), from one run's numbers."""
    result = document["models"].get(model)
    if result is None:
        return []
    found = []
    baseline = result["baseline"]
    for label, ours in result["ours"].items():
        precision = label.split()[-1]  # "fp32" (torch) or "openvino fp32"
        served = ours["load"][SATURATION]["pairs_per_s"]
        limit = result["limit"][label][SATURATION]["pairs_per_s"]
        ratio = _ratio(served, limit)
        found.append(
            Target(
                f"ours/limit at saturation, {label}",
                f">= {LIMIT_RATIO_GOAL:.2f}",
                f"{ratio:.2f}",
                ratio >= LIMIT_RATIO_GOAL,
            )
        )
        goal = BASELINE_RATIO_GOALS.get(precision)
        speedup = _ratio(ours["load"][CONCURRENCY_8]["pairs_per_s"], baseline["load"][CONCURRENCY_8]["pairs_per_s"])
        found.append(
            Target(
                f"ours/baseline at concurrency 8, {label}",
                f">= {goal}x" if goal else "report",
                f"{speedup:.2f}x",
                speedup >= goal if goal else None,
            )
        )
        p50 = ours["load"][CONCURRENCY_1]["p50_ms"]
        forward = result["limit"][label][CONCURRENCY_1]["median_batch_ms"]
        found.append(
            Target(
                f"p50 at concurrency 1, {label}",
                f"<= batch-1 forward + {LATENCY_SLACK_MS:.0f} ms ({forward + LATENCY_SLACK_MS:.0f} ms)",
                f"{p50:.0f} ms ({p50 - forward:+.0f} ms)",
                p50 <= forward + LATENCY_SLACK_MS,
            )
        )
        if precision in ("fp32", "bf16"):
            cold, cold_baseline = ours["cold_start_s"], baseline["cold_start_s"]
            found.append(
                Target(
                    f"cold start (no-archive), {label}",
                    f"<= baseline ({cold_baseline:.1f} s)",
                    f"{cold:.1f} s",
                    cold <= cold_baseline,
                )
            )
        memory = ours["memory"]
        pct = memory["second_worker_added_pct"]
        found.append(
            Target(
                f"second worker's PSS, {label}",
                f"<= {SECOND_WORKER_GOAL_PCT:.0f}% of the first" if precision != "int8" else "report",
                f"+{memory['second_worker_added_pss_mib']:.0f} MiB "
                f"({pct:.0f}% of {memory['one_worker']['pss']:.0f} MiB)",
                pct <= SECOND_WORKER_GOAL_PCT if precision != "int8" else None,
            )
        )
    return found + engine_targets(document, result)


def engine_targets(document: dict[str, Any], result: dict[str, Any]) -> list[Target]:
    """The engines issue's targets: the fastest mode against the baseline and in latency; fp32 engines."""
    native = bool(set(document["machine"].get("cpu_flags", ())) & set(BF16_FLAGS))
    kind = "native bf16" if native else "no native bf16"
    baseline = result["baseline"]["load"][CONCURRENCY_8]["pairs_per_s"]
    rates = {label: ours["load"][CONCURRENCY_8]["pairs_per_s"] for label, ours in result["ours"].items()}
    fastest = max(rates, key=lambda label: rates[label])
    goal = FASTEST_VS_BASELINE_GOAL[kind]
    speedup = _ratio(rates[fastest], baseline)
    p50 = result["ours"][fastest]["load"][CONCURRENCY_1]["p50_ms"]
    limit = result["limit"][fastest]
    limit_speedup = _ratio(limit[CONCURRENCY_8]["pairs_per_s"], baseline)
    served_share = _ratio(rates[fastest], limit[CONCURRENCY_8]["pairs_per_s"])
    forward_ms = limit[CONCURRENCY_1]["median_batch_ms"]
    found = [
        Target(
            f"fastest ({fastest}) / baseline at concurrency 8, {kind}",
            f">= {goal:.0f}x",
            f"{speedup:.2f}x",
            speedup >= goal,
            f"its limit is {limit_speedup:.2f}x the baseline; served / limit {served_share:.2f}",
        ),
        Target(
            f"p50 at concurrency 1, fastest ({fastest})",
            f"<= {FASTEST_P50_GOAL_MS:.0f} ms" if native else "report",
            f"{p50:.0f} ms",
            p50 <= FASTEST_P50_GOAL_MS if native else None,
            f"the batch-1 forward pass alone takes {forward_ms:.0f} ms (median); the rest is outside the engine",
        ),
    ]
    torch_fp32 = result["ours"].get("fp32", {}).get("load", {}).get(SATURATION, {}).get("pairs_per_s")
    for label, ours in result["ours"].items():
        if label != "fp32" and label.endswith(" fp32") and torch_fp32:
            ratio = _ratio(ours["load"][SATURATION]["pairs_per_s"], torch_fp32)
            name = f"{label} / torch fp32 at saturation (both within 1e-5)"
            found.append(Target(name, f">= {FP32_ENGINE_GOAL}x", f"{ratio:.2f}x", ratio >= FP32_ENGINE_GOAL))
    return found


def cost_per_million(pairs_per_s: float, usd_per_hour: float) -> float:
    """Dollars per one million embeddings at a measured rate on a machine costing ``usd_per_hour``."""
    return usd_per_hour / (pairs_per_s * 3600) * 1e6 if pairs_per_s > 0 else float("nan")


def _cost_table(result: dict[str, Any], usd_per_hour: float) -> list[str]:
    workloads = (CONCURRENCY_8, SATURATION)
    lines = [f"Cost per 1M embeddings at ${usd_per_hour:.3f}/hour (served rate):", ""]
    lines += ["| server | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    servers = [("baseline", result["baseline"])] + [(f"ours {p}", ours) for p, ours in result["ours"].items()]
    for label, server in servers:
        costs = [cost_per_million(server["load"][w]["pairs_per_s"], usd_per_hour) for w in workloads]
        lines.append(f"| {label} | " + " | ".join(f"${_fmt(cost)}" for cost in costs) + " |")
    return [*lines, ""]


def _fidelity_lines(result: dict[str, Any]) -> list[str]:
    figures = {label: f for label, f in result.get("fidelity", {}).items() if f}
    if not figures:
        return []
    lines = [
        "Fidelity gate (min / mean cosine to fp32 on the probe set; top-10 overlap and nDCG@10 against fp32's "
        "ranking of the probe corpus; at build time):",
        "",
    ]
    lines += [
        "| mode | served as | measured with | min | mean | top-10 overlap | nDCG@10 | floor | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, f in figures.items():
        verdict = f.get("verdict") or (
            "passed" if f["passed"] else ("forced (below the floor)" if f["forced"] else "refused")
        )
        ranking = f.get("ranking") or {}
        lines.append(
            f"| {label} | {f.get('chosen') or f['precision']} | {f['measured_with']} | {f['min_cosine']:.5f} | "
            f"{f['mean_cosine']:.5f} | {_fmt(ranking.get('top10_overlap'), 3)} | {_fmt(ranking.get('ndcg_at_10'), 4)} "
            f"| {f['floor']} | {verdict} |"
        )
    return [*lines, ""]


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _model_tables(name: str, result: dict[str, Any], usd_per_hour: float | None = None) -> list[str]:
    precisions = list(result["ours"])
    workloads = list(result["baseline"]["load"])
    lines = [f"### {name}: {result['description']}", ""]
    header = ["workload", "baseline"] + [f"ours {p}" for p in precisions] + [f"limit {p}" for p in precisions]
    lines += ["Throughput, pairs/s:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        row = [workload, _fmt(result["baseline"]["load"][workload]["pairs_per_s"])]
        row += [_fmt(result["ours"][p]["load"][workload]["pairs_per_s"]) for p in precisions]
        row += [_fmt(result["limit"][p][workload]["pairs_per_s"]) for p in precisions]
        lines.append("| " + " | ".join(row) + " |")
    header = ["workload", "baseline p50 / p99"] + [f"ours {p} p50 / p99" for p in precisions]
    header += [f"ours/baseline {p}" for p in precisions] + [f"ours/limit {p}" for p in precisions]
    lines += ["", "Latency (ms) and ratios:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        base = result["baseline"]["load"][workload]
        row = [workload, f"{_fmt(base['p50_ms'], 0)} / {_fmt(base['p99_ms'], 0)}"]
        for p in precisions:
            ours = result["ours"][p]["load"][workload]
            row.append(f"{_fmt(ours['p50_ms'], 0)} / {_fmt(ours['p99_ms'], 0)}")
        row += [
            _fmt(_ratio(result["ours"][p]["load"][workload]["pairs_per_s"], base["pairs_per_s"])) for p in precisions
        ]
        row += [
            _fmt(
                _ratio(result["ours"][p]["load"][workload]["pairs_per_s"], result["limit"][p][workload]["pairs_per_s"])
            )
            for p in precisions
        ]
        lines.append("| " + " | ".join(row) + " |")
    failures = {
        label: sum(load["failures"] for load in server["load"].values())
        for label, server in [("baseline", result["baseline"])] + [(f"ours {p}", result["ours"][p]) for p in precisions]
    }
    requests = {
        label: sum(load["requests"] for load in server["load"].values())
        for label, server in [("baseline", result["baseline"])] + [(f"ours {p}", result["ours"][p]) for p in precisions]
    }
    lines += ["", "Requests sent / failed: " + ", ".join(f"{k} {requests[k]} / {failures[k]}" for k in requests), ""]
    lines += ["Cold start (torchserve --start to first 200, no-archive) and worker memory (MiB):", ""]
    lines += ["| server | cold start s | RSS | PSS | second worker adds (PSS) |", "|---|---|---|---|---|"]
    base_memory = result["baseline"]["memory"]["one_worker"]
    lines.append(
        f"| baseline fp32 | {result['baseline']['cold_start_s']:.1f} | {base_memory['rss']:.0f} | "
        f"{base_memory['pss']:.0f} | - |"
    )
    for p in precisions:
        memory = result["ours"][p]["memory"]
        lines.append(
            f"| ours {p} | {result['ours'][p]['cold_start_s']:.1f} | {memory['one_worker']['rss']:.0f} | "
            f"{memory['one_worker']['pss']:.0f} | {memory['second_worker_added_pss_mib']:.0f} "
            f"({memory['second_worker_added_pct']:.0f}%) |"
        )
    if "zip_cold_start_s" in result:
        zipped = ", ".join(f"{k} {v:.1f} s" for k, v in result["zip_cold_start_s"].items())
        lines += ["", f"Cold start with the default (zip .mar) format: {zipped}."]
    lines += ["", *_fidelity_lines(result)]
    if usd_per_hour:
        lines += _cost_table(result, usd_per_hour)
    return [*lines, ""]


def markdown(document: dict[str, Any], plot_name: str | None = None) -> str:
    """The results page: machine, settings, targets, then one section per model."""
    machine = document["machine"]
    settings = document["settings"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {document['date']} with `{document['command']}` (written by scripts/bench.py; do not edit).",
        "",
        f"Machine: {machine['cpu']} (flags: {', '.join(machine.get('cpu_flags', [])) or 'not listed'}), "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"GPU: {machine['gpu'] or 'none'}; Python {machine['python']}, torch {machine['torch']}, "
        f"TorchServe {machine['torchserve']}.",
        "",
        f"Each server gets {settings['duration_s']:.0f} s per workload, in {settings.get('rounds', 1)} slices that "
        "alternate between the servers (all registered on one TorchServe), after one untimed slice each that warms "
        "up the shapes the workload brings (the limit is warmed alike), each slice at least one request per "
        f"client and {settings['min_requests']} in all (closed loop: each client sends its next request when the "
        "last returns). Cold start and memory: each archive alone on a fresh TorchServe. "
        f"{settings['pairs']} distinct pairs "
        f"with a ~8-token instruction and texts of 16-256 tokens (log-uniform). Our server: dynamic batching with "
        f"batch_size {settings['batch_size']}, max_batch_delay {settings['max_batch_delay_ms']} ms, one worker. "
        "Baseline: the upstream example's way (data[0] only, one fp32 encode per request, batch_size 1). "
        "Limit: the encoder alone on the same batch composition the server forms at saturation, no server.",
        "",
    ]
    if plot_name:
        lines += [f"![throughput]({plot_name})", ""]
    found = targets(document)
    if found:
        lines += [f"## Targets ({TARGET_MODEL} shape)", ""]
        lines += ["| target | goal | measured | met | why, when missed |", "|---|---|---|---|---|"]
        for target in found:
            met = "report" if target.met is None else ("yes" if target.met else "**no**")
            why = target.why if target.met is False else ""
            lines.append(f"| {target.name} | {target.goal} | {target.measured} | {met} | {why} |")
        lines.append("")
    lines += ["## Results", ""]
    for name, result in document["models"].items():
        lines += _model_tables(name, result, settings.get("usd_per_hour"))
    return "\n".join(lines)


def plot(document: dict[str, Any], path: Path) -> None:
    """Throughput per workload: baseline, ours per precision, and the limit as a tick, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(document["models"].items())
    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for axis, (name, result) in zip(axes[0], models, strict=True):
        workloads = list(result["baseline"]["load"])
        series = [("baseline", result["baseline"]["load"], None)]
        series += [(f"ours {p}", ours["load"], result["limit"][p]) for p, ours in result["ours"].items()]
        width = 0.8 / len(series)
        for offset, (label, loads, limits) in enumerate(series):
            xs = [index + (offset - (len(series) - 1) / 2) * width for index in range(len(workloads))]
            bars = axis.bar(xs, [loads[w]["pairs_per_s"] for w in workloads], width, label=label)
            if limits is not None:
                color = bars.patches[0].get_facecolor()
                axis.scatter(xs, [limits[w]["pairs_per_s"] for w in workloads], marker="_", s=200, color="black")
                axis.scatter([], [], marker="_", color=color)
        axis.set_xticks(range(len(workloads)), [w.replace(", ", "\n") for w in workloads], fontsize=8)
        axis.set_ylabel("pairs/s")
        axis.set_title(f"{name}: {result['description']}", fontsize=9)
        axis.legend(fontsize=7)
    figure.suptitle(
        f"{document['machine']['cpu']}, {document['machine']['cores']} cores, {document['date']} (black tick: limit)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
