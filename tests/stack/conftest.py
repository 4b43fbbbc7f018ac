"""Services for the stack's tests: real, short-lived processes (sleepers started the way `up`
starts services, by fmnist.stack.processes.start) and recorded; stopped at the end of each test
whatever happens."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fmnist import stack
from fmnist.stack import processes
from fmnist.stack.processes import alive, start
from fmnist.stack.record import save

PASSWORD = "s3cret-Pa55"
PYTHON = Path(sys.executable).name  # how `python -c ...` is named (no module, no script)
CHILD = "import os, sys, time; sys.argv[1] == 'setsid' and os.setsid(); time.sleep(60)"
PARENT = (
    "import os, subprocess, sys, time; mode, out = sys.argv[1], sys.argv[2]\n"
    "env = {} if mode == 'noenv' else None\n"  # noenv: a child that drops the marker
    f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}, mode], env=env)\n"
    "open(out + '.tmp', 'w').write(str(child.pid)); os.replace(out + '.tmp', out)\n"
    "time.sleep(60)\n"
)


class Stack:
    """Services started by services.start (own session, marker, log) and recorded; stopped at
    the end of the test whatever happens."""

    def __init__(self, root: Path) -> None:
        self.cfg = stack.StackConfig(root, root / ".stack")
        self.services: list[stack.Service] = []

    def parent(self, name: str, mode: str = "inherit") -> tuple[stack.Service, psutil.Process]:
        """A service whose process has one child (mode: inherit, setsid, noenv)."""
        out = self.cfg.root / f"{name}.child"
        cmd = [sys.executable, "-c", PARENT, mode, str(out)]
        self.services.append(start(name, cmd, {}, self.cfg, "", ""))
        save(self.cfg, self.services)
        deadline = time.monotonic() + 20
        while not out.exists():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        return self.services[-1], psutil.Process(int(out.read_text()))

    def found(self) -> dict[int, processes.Found]:
        return {
            f.process.pid: f for f in processes.find_processes(self.cfg.state_dir, self.services)
        }


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stack]:
    started = Stack(tmp_path)
    yield started
    processes.stop(started.cfg.state_dir, started.services, timeout=5)


def kill(service: stack.Service) -> None:
    """SIGKILL the service's own process and wait until it is gone."""
    os.kill(service.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(service):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def runs(proc: psutil.Process) -> bool:
    """proc runs: not gone, not a zombie (this container's init may be slow to reap them)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def session_members(sid: int) -> list[int]:
    """Processes of a session that still run (zombies await their parent, they run nothing)."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members
