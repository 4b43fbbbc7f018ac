"""The stack's processes, started, found and stopped with psutil, and the loopback ports they
take. How a process is known to be the stack's: see find_processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from fmnist.process.stopping import running, terminate
from fmnist.stack.record import Service, StackConfig, StackError, passwords, private_dir, redact

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
    with socket.socket() as sock, socket.socket() as probe:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0  # (macOS binds beside 0.0.0.0)


def port_holders(port: int) -> list[str]:
    """Who listens on port, among the processes psutil may look into (macOS: our user's)."""
    procs = [p for p in psutil.process_iter() if any(n == port for _, n in _listening(p))]
    return [f"{_program(proc)} (pid {proc.pid})" for proc in procs]


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    try:
        conns = proc.net_connections("tcp")
    except psutil.Error:
        return []
    return sorted({(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN})


def _recorded(service: Service) -> psutil.Process | None:
    """The process `up` recorded, not a stranger that reused its pid (running or not)."""
    try:
        proc = psutil.Process(service.pid)
        if service.create_time is None:  # a record of an older fmnist: its command line
            return proc if proc.cmdline() == service.cmdline else None
        return proc if abs(proc.create_time() - service.create_time) < _SAME_START else None
    except psutil.Error:
        return None


def alive(service: Service) -> bool:
    """The service's own process still runs (not a stranger that reused the pid)."""
    proc = _recorded(service)
    return proc is not None and running(proc)


def marker(state_dir: Path) -> str:
    """The value of MARKER on every process of the stack at state_dir."""
    return str(state_dir.absolute())


def find_processes(state_dir: Path, services: Sequence[Service]) -> list[Found]:
    """Every live process of the stack at state_dir: each recorded one (if its create_time
    matches), its descendants, every process carrying the marker (orphans keep their
    environment) and what is still in the session `up` started it in."""
    found: dict[int, Found] = {}

    def add(proc: psutil.Process, service: str | None, top: bool = False) -> None:
        if proc.pid not in found and proc.pid != os.getpid() and running(proc):
            found[proc.pid] = Found(proc, service, top, _program(proc))

    for service in services:
        if (top := _recorded(service)) is not None and running(top):
            add(top, service.name, top=True)
            with contextlib.suppress(psutil.Error):
                for child in top.children(recursive=True):
                    add(child, service.name)
    # A session id stays taken while any member lives: a gone leader's is still ours.
    sessions = {
        s.pid: s for s in services if not psutil.pid_exists(s.pid) or _recorded(s) is not None
    }
    for proc in psutil.process_iter(["environ", "create_time"]):
        env = proc.info["environ"] or {}  # None: AccessDenied (another user's process)
        if env.get(MARKER) == marker(state_dir):
            add(proc, env.get(SERVICE_MARKER))
            continue
        with contextlib.suppress(OSError):
            leader = sessions.get(os.getsid(proc.pid))
            started = proc.info["create_time"] or 0.0
            if leader is not None and started >= (leader.create_time or 0.0) - _SAME_START:
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
    """SIGTERM every process of the stack and the process groups `up` made, SIGKILL what runs
    after timeout, then what is found again at once; returns what ran. StackError if something
    survives (another user's, say)."""
    stopped: dict[int, Found] = {}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 0.0)):  # again: new children
        found = find_processes(state_dir, services)
        leaders = {s.pid for s in services} | {f.process.pid for f in found}
        groups: set[int] = set()
        for f in found:
            stopped.setdefault(f.process.pid, f)
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(f.process.pid))
        for group in (groups & leaders) - {os.getpgrp()}:  # never our own group
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        terminate([f.process for f in found], wait)
    left = find_processes(state_dir, services)
    if left:
        raise StackError(f"could not stop {listed(left)}")
    return sorted(stopped.values(), key=lambda f: f.process.pid)


def start(
    name: str, cmd: list[str], env: Mapping[str, str], cfg: StackConfig, url: str, health: str
) -> Service:
    """Start cmd as service name: its own session, the marker, a private log."""
    private_dir(cfg.state_dir)
    private_dir(cfg.state_dir / "logs")
    log = cfg.state_dir / "logs" / f"{name}.log"  # servers may print what they connect to
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(out, 0o600)  # a log from before may be wider
        proc = subprocess.Popen(
            cmd,
            cwd=cfg.root,
            env={**env, MARKER: marker(cfg.state_dir), SERVICE_MARKER: name},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and group: down finds and stops its children
        )
    finally:
        os.close(out)
    started = psutil.Process(proc.pid).create_time()  # ours until reaped: it cannot be reused
    shown = [redact(arg, passwords(cmd)) for arg in cmd]
    return Service(name, proc.pid, shown, url, health, str(log), started)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The URL answers 200 (loopback only; the stack never talks elsewhere)."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200  # no proxy
    except (httpx.HTTPError, httpx.InvalidURL):
        return False


def wait_healthy(service: Service, timeout: float, secrets: Iterable[str] = ()) -> None:
    """Until the service answers its health check; else StackError with its log's last line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(service.health_url):
            return
        if not alive(service):
            break
        time.sleep(0.5)
    try:
        text = Path(service.log).read_text(errors="replace")
    except FileNotFoundError:
        text = "(no log)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = redact(lines[-1] if lines else "(empty log)", secrets)
    state = "exited" if not alive(service) else f"no answer after {timeout:.0f} s"
    raise StackError(f"{service.name} {state} at {service.health_url}; log {service.log}: {tail}")
