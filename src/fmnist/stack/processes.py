"""The stack's processes, found, matched and stopped with psutil, and the loopback ports they
take. How a process is known to be the stack's: see the package's docstring."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from fmnist.stack.record import Service, StackError

MARKER = "FMNIST_STACK"  # = the state dir: set on every process `up` starts, inherited
SERVICE_MARKER = "FMNIST_STACK_SERVICE"  # = the service's name
_SAME_START = 1.0  # s: create_times this close are the same process (clock steps move both)


@dataclass(frozen=True)
class Found:
    """A live process of the stack."""

    process: psutil.Process
    service: str | None  # the service it belongs to (recorded, or named by its marker)
    top: bool = False  # the recorded process itself
    program: str = "?"  # what it runs, read when found (a dead process no longer says)

    def describe(self) -> str:
        """`uvicorn (pid 4711, on 127.0.0.1:5000)` (the ports while it listens)."""
        ports = "".join(f", on {ip}:{port}" for ip, port in _listening(self.process))
        return f"{self.program} (pid {self.process.pid}{ports})"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_busy(port: int) -> bool:
    """Something answers on 127.0.0.1:port, or holds it (a server could not bind it)."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_holders(port: int) -> list[str]:
    """Who listens on port, among the processes psutil may look into (our user's at least:
    macOS lists all sockets to root only)."""
    procs = [p for p in psutil.process_iter() if any(n == port for _, n in _listening(p))]
    return [f"{_program(proc)} (pid {proc.pid})" for proc in procs]


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    try:
        conns = proc.net_connections("tcp")
    except psutil.Error:
        return []
    return sorted({(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN})


def _same(proc: psutil.Process, service: Service) -> bool:
    """proc is the process `up` recorded, not a stranger that reused its pid."""
    try:
        if service.create_time is None:  # a record of an older fmnist: its command line
            return bool(proc.cmdline() == service.cmdline)
        return abs(proc.create_time() - service.create_time) < _SAME_START
    except psutil.Error:
        return False


def _running(proc: psutil.Process) -> bool:
    """proc runs (a zombie only waits for its parent; ours are reaped here)."""
    try:
        if not proc.is_running():
            return False
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
        if proc.ppid() == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
    except psutil.Error:
        pass
    return False


def _process(service: Service) -> psutil.Process | None:
    """The service's own process, if it still runs."""
    try:
        proc = psutil.Process(service.pid)
    except psutil.Error:
        return None
    return proc if _same(proc, service) and _running(proc) else None


def alive(service: Service) -> bool:
    """The service's own process still runs (not a stranger that reused the pid)."""
    return _process(service) is not None


def _session_is_ours(service: Service) -> bool:
    """The session named by the service's pid is the one `up` started (its leader is ours,
    or gone: a session id stays taken while any member lives, so no stranger has it)."""
    try:
        return _same(psutil.Process(service.pid), service)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def marker(state_dir: Path) -> str:
    """The value of MARKER on every process of the stack at state_dir."""
    return str(state_dir.absolute())


def _session(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return 0


def find_processes(state_dir: Path, services: Sequence[Service]) -> list[Found]:
    """Every live process of the stack at state_dir (see the package's docstring)."""
    found: dict[int, Found] = {}

    def add(proc: psutil.Process, service: str | None, top: bool = False) -> None:
        if proc.pid not in found and proc.pid != os.getpid() and _running(proc):
            found[proc.pid] = Found(proc, service, top, _program(proc))

    for service in services:
        if (top := _process(service)) is not None:
            add(top, service.name, top=True)
            with contextlib.suppress(psutil.Error):
                for child in top.children(recursive=True):
                    add(child, service.name)
    sessions = {s.pid: s for s in services if _session_is_ours(s)}
    for proc in psutil.process_iter(["environ", "create_time"]):
        env = proc.info["environ"] or {}  # None: AccessDenied (another user's process)
        if env.get(MARKER) == marker(state_dir):
            add(proc, env.get(SERVICE_MARKER))
        elif (leader := sessions.get(_session(proc.pid))) is not None:
            started = proc.info["create_time"] or 0.0
            if started >= (leader.create_time or 0.0) - _SAME_START:
                add(proc, leader.name)
    return sorted(found.values(), key=lambda f: f.process.pid)


def _program(proc: psutil.Process) -> str:
    """What a process runs, in a word: `uvicorn` for `python -m uvicorn ...`."""
    args: list[str] = []
    with contextlib.suppress(psutil.Error):
        args = proc.cmdline()
    with contextlib.suppress(psutil.Error):
        args = args or [proc.name()]
    if len(args) > 1 and Path(args[0]).name.startswith("python"):
        if args[1] == "-m" and len(args) > 2:
            return str(args[2])
        if not args[1].startswith("-"):
            return Path(args[1]).name
    return Path(args[0]).name if args else "?"


def listed(found: Sequence[Found], limit: int = 6) -> str:
    """`mlflow-server uvicorn (pid 4711), ...` for a message: the first limit of found."""
    shown = [f"{f.service or '?'} {f.describe()}" for f in found[:limit]]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(shown) + more


def stop(state_dir: Path, services: Sequence[Service], timeout: float = 15.0) -> list[Found]:
    """SIGTERM every process of the stack, SIGKILL what is still found after timeout; returns
    what ran. StackError if something survives (another user's process, say)."""
    stopped: dict[int, Found] = {}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0), (signal.SIGKILL, 5.0)):
        found = find_processes(state_dir, services)  # again: children started meanwhile
        if not found:
            break
        # sig to the process groups `up` made (children started since), then to each process
        leaders = {s.pid for s in services} | {f.process.pid for f in found}
        groups: set[int] = set()
        for f in found:
            stopped.setdefault(f.process.pid, f)
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(f.process.pid))
        for group in (groups & leaders) - {os.getpgrp()}:  # never our own group
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        for f in found:
            with contextlib.suppress(psutil.Error):
                f.process.send_signal(sig)  # psutil checks it is still the same process
        deadline = time.monotonic() + wait
        while any(_running(f.process) for f in found) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = find_processes(state_dir, services)
    if left:
        raise StackError(f"could not stop {listed(left)}")
    return sorted(stopped.values(), key=lambda f: f.process.pid)
