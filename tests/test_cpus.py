"""A worker's CPUs: the smaller of its affinity mask and its cgroup's quota, shared by the workers running."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.cpus import cgroup_quota, cpu_share
from tests.conftest import RunningServer, registered_model


def cgroup_v2(tmp_path: Path, cpu_max: str, parent_cpu_max: str | None = None) -> tuple[Path, Path]:
    """A cgroup v2 tree whose process sits in /kubepods/pod1 (as /proc/self/cgroup says)."""
    root = tmp_path / "cgroup"
    (root / "kubepods" / "pod1").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "kubepods" / "pod1" / "cpu.max").write_text(cpu_max + "\n")
    if parent_cpu_max is not None:
        (root / "kubepods" / "cpu.max").write_text(parent_cpu_max + "\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text("0::/kubepods/pod1\n")
    return root, self_cgroup


def cgroup_v1(tmp_path: Path, quota: int, period: int = 100000) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    folder = root / "cpu,cpuacct" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    return root, self_cgroup


def test_a_pod_limit_of_two_cpus_on_a_32_core_node_gives_two_threads(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v2(tmp_path, "200000 100000")
    share = cpu_share(0, workers=1, affinity=32, cgroup_root=root, self_cgroup=self_cgroup)
    assert (share.cpus, share.threads) == (2, 2)
    assert "cgroup quota 2 CPUs" in share.source and "kubepods/pod1/cpu.max" in share.source


def test_fractional_quotas_round_down_and_never_below_one(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v2(tmp_path, "250000 100000")
    assert cpu_share(0, workers=1, affinity=32, cgroup_root=root, self_cgroup=self_cgroup).cpus == 2
    root, self_cgroup = cgroup_v2(tmp_path / "small", "50000 100000")
    share = cpu_share(0, workers=2, affinity=32, cgroup_root=root, self_cgroup=self_cgroup)
    assert (share.cpus, share.threads) == (1, 1)


def test_the_tightest_ancestor_quota_counts_and_max_means_none(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v2(tmp_path, "max 100000", parent_cpu_max="400000 100000")
    assert cgroup_quota(root, self_cgroup) == (4.0, str(root / "kubepods" / "cpu.max"))
    root, self_cgroup = cgroup_v2(tmp_path / "none", "max 100000")
    assert cgroup_quota(root, self_cgroup) is None
    share = cpu_share(0, workers=2, affinity=8, cgroup_root=root, self_cgroup=self_cgroup)
    assert (share.cpus, share.threads) == (8, 4) and share.source.startswith("affinity mask (8)")


@pytest.mark.parametrize(("quota", "expected"), [(300000, 3), (-1, 16)])
def test_cgroup_v1_quota_and_period(tmp_path: Path, quota: int, expected: int) -> None:
    root, self_cgroup = cgroup_v1(tmp_path, quota)
    assert cpu_share(0, workers=1, affinity=16, cgroup_root=root, self_cgroup=self_cgroup).cpus == expected


def test_a_quota_above_the_affinity_mask_changes_nothing(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v2(tmp_path, "800000 100000")
    share = cpu_share(0, workers=1, affinity=2, cgroup_root=root, self_cgroup=self_cgroup)
    assert share.cpus == 2 and share.source.startswith("affinity mask")


def test_the_threads_setting_wins(tmp_path: Path) -> None:
    root, self_cgroup = cgroup_v2(tmp_path, "200000 100000")
    share = cpu_share(6, workers=4, affinity=32, cgroup_root=root, self_cgroup=self_cgroup)
    assert share.threads == 6 and share.source == "handler setting threads"


@pytest.mark.integration
def test_a_served_worker_counts_the_workers_the_server_runs(torchserve: RunningServer) -> None:
    with registered_model(torchserve, "instructor.mar", "instructor", initial_workers=1):
        (described,) = torchserve.management.describe("instructor", customized=True)
        running = sum(
            len(torchserve.management.describe(name)[0]["workers"]) for name in torchserve.management.list_models()
        )
    share = described["customizedMetadata"]["cpus"]
    assert share["workers"] == running and share["threads"] == max(1, share["cpus"] // running)
