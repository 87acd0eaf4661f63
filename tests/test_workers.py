"""`make test`'s worker count (tests/conftest.py): the physical cores this process may run on, not the machine's."""

from __future__ import annotations

import os

import conftest
import pytest
from conftest import physical_cores


def _sysfs(tmp_path, cores: list[str]):
    """A topology folder where cores[i] lists the CPUs sharing CPU i's core."""
    for cpu, siblings in enumerate(cores):
        folder = tmp_path / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "core_cpus_list").write_text(f"{siblings}\n")
    return tmp_path


def test_the_threads_of_one_core_count_once(tmp_path):
    # two packages of two cores, each core with two hyperthreads numbered apart (0 and 4 share a core), as Linux
    # numbers them on most x86 servers
    sysfs = _sysfs(tmp_path, ["0,4", "1,5", "2,6", "3,7", "0,4", "1,5", "2,6", "3,7"])
    assert physical_cores({0, 4}, sysfs) == 1
    assert physical_cores({0, 1}, sysfs) == 2
    assert physical_cores(set(range(8)), sysfs) == 4
    assert physical_cores({0, 9}, sysfs) == 2  # no topology files for cpu9: one worker per CPU


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_xdist_asks_the_hook_and_gets_the_cores_of_this_process(pytestconfig, monkeypatch, tmp_path):
    """Through pytest's hook relay, as xdist asks it for `-n auto`: two CPUs allowed, one core's two threads."""
    pytest.importorskip("xdist")
    monkeypatch.setattr(conftest, "SYSFS_CPUS", _sysfs(tmp_path, ["0,1", "0,1", "2,3", "2,3"]))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a job given two CPUs of a larger machine
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    ask = pytestconfig.hook.pytest_xdist_auto_num_workers
    monkeypatch.setattr(pytestconfig.option, "numprocesses", "auto", raising=False)
    assert ask(config=pytestconfig) == 1
    monkeypatch.setattr(pytestconfig.option, "numprocesses", "logical", raising=False)
    assert ask(config=pytestconfig) == 2
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")  # xdist reads the variable itself
    assert ask(config=pytestconfig) == 3
