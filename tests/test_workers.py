"""`make test`'s worker count (tests/conftest.py): the physical cores this process may run on, not the machine's."""

from __future__ import annotations

import os

import pytest
from conftest import physical_cores, pytest_xdist_auto_num_workers


def _sysfs(tmp_path, topology: dict[int, tuple[int, int]]):
    for cpu, (package, core) in topology.items():
        folder = tmp_path / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "physical_package_id").write_text(f"{package}\n")
        (folder / "core_id").write_text(f"{core}\n")
    return tmp_path


def test_hyperthreads_of_one_core_count_once_and_packages_apart(tmp_path):
    # two packages, each with cores 0 and 1, each core with two hyperthreads
    sysfs = _sysfs(tmp_path, {cpu: (cpu // 4, (cpu // 2) % 2) for cpu in range(8)})
    assert physical_cores({0, 1}, sysfs) == 1  # one core's two threads
    assert physical_cores({0, 2}, sysfs) == 2
    assert physical_cores({1, 5}, sysfs) == 2  # core 0 of each package
    assert physical_cores(set(range(8)), sysfs) == 4
    assert physical_cores({0, 9}, sysfs) == 2  # no topology files for cpu9: one worker per CPU


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_auto_counts_the_cpus_this_process_may_run_on(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # a job given one CPU of a larger machine
    assert pytest_xdist_auto_num_workers(None) == 1
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert pytest_xdist_auto_num_workers(None) is None  # xdist reads the variable itself
