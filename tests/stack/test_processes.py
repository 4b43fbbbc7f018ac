"""Finding the stack's processes on real, short-lived ones (sleepers started the way `up`
starts services) and real signals: a service and its children, orphans, reused pids, another
stack's processes."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from fmnist import stack
from fmnist.stack import processes
from fmnist.stack.processes import alive
from tests.stack.conftest import PYTHON, Stack, kill, runs, session_members


def test_a_service_and_its_child_are_found_and_stopped(run: Stack) -> None:
    service, child = run.parent("a")
    other, _ = run.parent("b")
    found = run.found()
    assert found[service.pid].top and found[service.pid].service == "a"
    assert not found[child.pid].top and found[child.pid].service == "a"
    assert {f.service for f in found.values()} == {"a", "b"}
    assert service.create_time == psutil.Process(service.pid).create_time()

    stopped = processes.stop(run.cfg.state_dir, run.services, timeout=5)
    assert {f.process.pid for f in stopped} == set(found)
    assert run.found() == {}
    assert session_members(service.pid) == [] and session_members(other.pid) == []


@pytest.mark.parametrize("mode", ["inherit", "setsid", "noenv"])
def test_an_orphan_is_found_named_and_stopped(run: Stack, mode: str) -> None:
    """inherit: found by marker and session; setsid: left the session, found by the marker;
    noenv: dropped the marker, found by the session."""
    service, child = run.parent("mlflow-server", mode)
    kill(service)  # the parent dies; its child is reparented and runs on
    assert runs(child) and child.ppid() != service.pid

    assert list(run.found()) == [child.pid]
    (row,) = stack.status(run.cfg.state_dir).services
    assert row.state == "running"
    assert row.orphans == [f"{PYTHON} (pid {child.pid})"]

    result = stack.down(run.cfg.root, run.cfg.state_dir)
    assert result.services == ["mlflow-server"] and result.damaged is None
    assert not runs(child)
    assert stack.load_services(run.cfg.state_dir) == []


def test_a_reused_pid_is_not_ours(run: Stack) -> None:
    service, _ = run.parent("a")
    assert service.create_time is not None
    stranger = stack.Service(
        "a", service.pid, service.cmdline, "", "", "", service.create_time - 60
    )
    assert not alive(stranger)
    assert processes.find_processes(run.cfg.root / "elsewhere", [stranger]) == []
    assert processes.stop(run.cfg.root / "elsewhere", [stranger]) == []  # left alone
    assert alive(service)


def test_another_stacks_processes_are_not_ours(run: Stack, tmp_path: Path) -> None:
    other = Stack(tmp_path / "other")
    other.cfg.root.mkdir()
    theirs, _ = other.parent("a")
    try:
        assert run.found() == {}
        assert stack.down(run.cfg.root, run.cfg.state_dir).services == []
        assert alive(theirs)
    finally:
        processes.stop(other.cfg.state_dir, other.services, timeout=5)
