"""How many CPUs a worker may use, and how many threads it runs (torch's and OpenVINO's).

A worker's CPUs are the smaller of its affinity mask and its cgroup's CPU quota: in a Kubernetes
pod with ``limits: cpu: "2"`` on a 32-core node (default CPU manager policy) the mask holds all 32
cores, and 32 threads inside a 2-CPU quota are throttled and spin-wait on descheduled peers. The
quota is read from cgroup v2 (``cpu.max``, the worker's own cgroup and every parent) or v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded down, at least 1.

Those CPUs are shared among the TorchServe workers running beside this one (every model's: they
compete for the same cores), counted from the server's process table, never from a config value
that scaling through ``PUT /models`` later makes stale.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# The script TorchServe's frontend starts each worker with.
WORKER_SCRIPT = "model_service_worker"


@dataclasses.dataclass(frozen=True)
class CpuShare:
    """The CPUs this worker may use, how many workers share them, the threads that gives, and why."""

    cpus: int
    workers: int
    threads: int
    source: str

    def describe(self) -> dict[str, int | str]:
        return dataclasses.asdict(self)


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> tuple[float, str] | None:
    """The CPU quota of this process's cgroup (CPUs, may be fractional) and the file it came from; None if unlimited."""
    paths = _cgroup_paths(self_cgroup)
    limits = [limit for limit in (_v2_quota(cgroup_root, paths.get("")), _v1_quota(cgroup_root, paths)) if limit]
    return min(limits) if limits else None


def cpu_share(
    configured_threads: int = 0,
    workers: int | None = None,
    affinity: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    self_cgroup: Path = PROC_SELF_CGROUP,
) -> CpuShare:
    """This worker's CPUs (affinity mask, cgroup quota) divided among ``workers`` (counted when not given).

    ``configured_threads`` > 0 (the ``threads`` handler setting) wins over the division.
    """
    affinity = len(os.sched_getaffinity(0)) if affinity is None else affinity
    cpus, source = affinity, f"affinity mask ({affinity})"
    quota = cgroup_quota(cgroup_root, self_cgroup)
    if quota is not None and math.floor(quota[0]) < cpus:
        cpus, source = max(1, math.floor(quota[0])), f"cgroup quota {quota[0]:g} CPUs ({quota[1]})"
    workers = max(1, running_workers() if workers is None else workers)
    if configured_threads > 0:
        return CpuShare(cpus, workers, configured_threads, "handler setting threads")
    return CpuShare(cpus, workers, max(1, cpus // workers), f"{source} / {workers} worker(s)")


def running_workers() -> int:
    """TorchServe workers alive beside this one (children of the same frontend), this one included."""
    import psutil  # a TorchServe dependency

    try:
        siblings = psutil.Process(os.getppid()).children()
        return max(1, sum(1 for process in siblings if _is_worker(process)))
    except psutil.Error:
        return 1


def _is_worker(process: object) -> bool:
    import psutil

    try:
        return any(WORKER_SCRIPT in part for part in process.cmdline())  # type: ignore[attr-defined]
    except psutil.Error:
        return False


def _cgroup_paths(self_cgroup: Path) -> dict[str, str]:
    """Controller list -> path, from /proc/self/cgroup (v2's unified line has the key "")."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


def _v2_quota(root: Path, path: str | None) -> tuple[float, str] | None:
    """The tightest ``cpu.max`` from this cgroup up to the root ("max" means none)."""
    if path is None or not (root / "cgroup.controllers").exists():
        return None
    limits = []
    folder = root / path.lstrip("/")
    for candidate in [folder, *folder.parents]:
        cpu_max = candidate / "cpu.max"
        if cpu_max.is_file():
            quota, _, period = cpu_max.read_text().strip().partition(" ")
            if quota != "max" and period:
                limits.append((int(quota) / int(period), str(cpu_max)))
        if candidate == root:
            break
    return min(limits) if limits else None


def _v1_quota(root: Path, paths: dict[str, str]) -> tuple[float, str] | None:
    """``cpu.cfs_quota_us / cpu.cfs_period_us`` of the cpu controller (-1 means none)."""
    for controllers, path in paths.items():
        if "cpu" not in controllers.split(","):
            continue
        for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
            for folder in (mount / path.lstrip("/"), mount):
                quota_file, period_file = folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"
                if quota_file.is_file() and period_file.is_file():
                    quota, period = int(quota_file.read_text()), int(period_file.read_text())
                    return (quota / period, str(quota_file)) if quota > 0 and period > 0 else None
    return None
