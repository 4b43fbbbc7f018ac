"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store.

Everything binds 127.0.0.1. How the stack knows its processes (psutil: the same on Linux
and macOS, no /proc):

- `up` starts each service in a session of its own with the marker `FMNIST_STACK=<state dir>`
  (and `FMNIST_STACK_SERVICE=<name>`) in its environment, which every child inherits, and
  records its pid, psutil's create_time and its (redacted) command line in `<state>/stack.json`.
- A service's processes are the recorded one, if that pid still runs with the recorded
  create_time (otherwise the pid was reused by a stranger), its descendants, every process
  carrying the marker (children orphaned by a dead parent are reparented, but keep their
  environment) and, on POSIX, what is still in the service's session.
- `down` sends SIGTERM to the services' process groups and to each process found, waits,
  then SIGKILLs whatever is still found; a damaged record is removed after that.

Secrets stay out of sight: database URLs reach the servers by environment, never on a
command line (which `ps` shows every user); the record holds redacted URLs only, and the
state folder, the record and the servers' logs are private to the user (0700, 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fmnist.errors import FmnistError

STATE_FILE = "stack.json"
WORK_POOL = "fmnist"
PREFECT_TOML = "prefect.toml"
MARKER = "FMNIST_STACK"  # = the state dir: set on every process `up` starts, inherited
SERVICE_MARKER = "FMNIST_STACK_SERVICE"  # = the service's name
_TOML_MARK = "# written by `make up` (fmnist stack); `make down` removes it"
_SAME_START = 1.0  # s: create_times this close are the same process (clock steps move both)


class StackError(FmnistError):
    """The local stack could not start, or is in a state that needs the user's hand."""

    exit_code = 7


class DamagedRecord(StackError):
    """stack.json is unreadable, not JSON, or not the list of services `up` writes."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(
            f"{_shown(path)} is damaged ({why}); run `fmnist stack down` to stop what can be found"
        )


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which loopback ports it takes."""

    root: Path
    state_dir: Path  # absolute: it is the marker every process of the stack carries
    prefect_port: int = 4200
    mlflow_port: int = 5000
    worker_port: int = 0  # the worker's health endpoint; 0 = any free port
    tracking_uri: str | None = None  # default: sqlite:///<root>/mlflow.db
    # The production profile: the MLflow server on a database (postgresql://...) with its
    # own artifact root, every run tracking through the server; Prefect on a database too.
    mlflow_backend_uri: str | None = None  # default: the tracking store above
    mlflow_artifacts: str | None = None  # default: <root>/mlruns
    prefect_database_url: str | None = None  # postgresql+asyncpg://...; default: sqlite
    deploy: bool = True
    env: Mapping[str, str] = field(default_factory=dict)  # extra env for every process


@dataclass(frozen=True)
class Service:
    """One process `up` started, as recorded in stack.json."""

    name: str
    pid: int
    cmdline: list[str]  # as started, redacted
    url: str
    health_url: str
    log: str
    create_time: float | None = None  # psutil's; None in records made before it was kept


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


@dataclass(frozen=True)
class ServiceStatus:
    """A recorded service: healthy / running / stopped, and its orphans if its process died."""

    service: Service
    state: str
    orphans: list[str]  # processes still running after the service's own process died


@dataclass(frozen=True)
class StackStatus:
    services: list[ServiceStatus]
    unrecorded: list[str]  # processes of the stack that belong to no recorded service


@dataclass(frozen=True)
class Stopped:
    """What `down` stopped."""

    services: list[str]  # services that still had processes (recorded or named by the marker)
    unrecorded: list[str]  # processes carrying the stack's marker but no service's name
    damaged: str | None = None  # why the record was damaged, if it was (it is removed)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True  # something answers there
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _port_holders(port: int) -> list[str]:
    """Who listens on port, as far as psutil may tell (all sockets, else our user's)."""
    pids: set[int] = set()
    try:
        pids = {c.pid for c in psutil.net_connections("tcp") if c.pid and _listens(c, port)}
    except psutil.Error:  # AccessDenied: macOS lists all sockets to root only
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if any(_listens(c, port) for c in proc.net_connections("tcp")):
                    pids.add(proc.pid)
    holders = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            holders.append(f"{_program(psutil.Process(pid))} (pid {pid})")
    return holders


def _listens(conn: Any, port: int) -> bool:
    return bool(conn.laddr) and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN


def _listening(proc: psutil.Process) -> list[tuple[str, int]]:
    try:
        conns = proc.net_connections("tcp")
    except psutil.Error:
        return []
    return sorted({(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN})


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The URL answers 200 (loopback only; the stack never talks elsewhere)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --- secrets ---------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """text without passwords: `postgresql://user:***@host/db`, `password=***`, and each of
    secrets (passwords known to be somewhere in it) as `***`."""
    from fmnist.store import redact as redact_uris

    text = redact_uris(text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:  # a 1-2 character "password" would mangle everything
            text = text.replace(secret, "***")
    return text


def _passwords(values: Iterable[str]) -> set[str]:
    """The passwords in URLs among values (as written and percent-decoded)."""
    found: set[str] = set()
    for value in values:
        if "://" not in value:
            continue
        with contextlib.suppress(ValueError):
            password = urllib.parse.urlsplit(value).password
            if password:
                found |= {password, urllib.parse.unquote(password)}
    return found


def _private_dir(path: Path) -> None:
    """A folder only its owner can enter (the state dir: logs, Prefect home, the record)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _private_file(path: Path, flags: int) -> int:
    """An fd on path, created or not, readable by its owner only."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # a file from before may be wider
    return fd


# --- the record --------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """path as the user would type it: relative to the working folder when inside it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _save(cfg: StackConfig, services: list[Service]) -> None:
    path = cfg.state_dir / STATE_FILE
    tmp = path.with_suffix(".partial")
    text = json.dumps([asdict(s) for s in services], indent=2)
    with os.fdopen(_private_file(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def load_services(state_dir: Path) -> list[Service]:
    """What the last `up` started (empty when the stack is down); DamagedRecord if the record
    cannot be read as such."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeError) as exc:
        raise DamagedRecord(path, f"unreadable: {exc}") from None
    if not text.strip():
        raise DamagedRecord(path, "empty")
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedRecord(path, f"not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise DamagedRecord(path, f"a list of services expected, found {_kind(entries)}")
    return [_service(path, i, entry) for i, entry in enumerate(entries, 1)]


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "pid": int, "cmdline": list, "url": str, "health_url": str, "log": str,
}  # fmt: skip


def _service(path: Path, number: int, entry: object) -> Service:
    if not isinstance(entry, dict):
        raise DamagedRecord(path, f"service {number} is {_kind(entry)}, not an object")
    missing = [key for key in _FIELDS if key not in entry]
    if missing:
        raise DamagedRecord(path, f"service {number} lacks {', '.join(missing)}")
    for key, kind in {**_FIELDS, "create_time": (int, float, type(None))}.items():
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DamagedRecord(path, f"service {number}: {key} is {_kind(value)}")
    if entry["pid"] <= 0 or not all(isinstance(arg, str) for arg in entry["cmdline"]):
        raise DamagedRecord(path, f"service {number}: pid or cmdline out of shape")
    return Service(
        entry["name"], entry["pid"], entry["cmdline"], entry["url"], entry["health_url"],
        entry["log"], entry.get("create_time"),
    )  # fmt: skip


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


# --- finding and stopping processes ------------------------------------------------------------


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


def _session_is_ours(service: Service) -> bool:
    """The session named by the service's pid is the one `up` started (its leader is ours,
    or gone: a session id stays taken while any member lives, so no stranger has it)."""
    try:
        return _same(psutil.Process(service.pid), service)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _marker(state_dir: Path) -> str:
    return str(state_dir.absolute())


def _session(pid: int) -> int | None:
    if not hasattr(os, "getsid"):
        return None
    try:
        return os.getsid(pid)
    except OSError:
        return None


def find_processes(state_dir: Path, services: Sequence[Service]) -> list[Found]:
    """Every live process of the stack at state_dir (see the module's docstring)."""
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
        if env.get(MARKER) == _marker(state_dir):
            add(proc, env.get(SERVICE_MARKER))
        elif (leader := sessions.get(_session(proc.pid) or 0)) is not None:
            started = proc.info["create_time"] or 0.0
            if started >= (leader.create_time or 0.0) - _SAME_START:
                add(proc, leader.name)
    return sorted(found.values(), key=lambda f: f.process.pid)


def _program(proc: psutil.Process) -> str:
    """What a process runs, in a word: `uvicorn` for `python -m uvicorn ...`."""
    try:
        args = proc.cmdline()
    except psutil.Error:
        args = []
    if len(args) > 1 and Path(args[0]).name.startswith("python"):
        if args[1] == "-m" and len(args) > 2:
            return str(args[2])
        if not args[1].startswith("-"):
            return Path(args[1]).name
    if args:
        return Path(args[0]).name
    try:
        return str(proc.name())
    except psutil.Error:
        return "?"


def _listed(found: Sequence[Found], limit: int = 6) -> str:
    shown = [f"{f.service or '?'} {f.describe()}" for f in found[:limit]]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(shown) + more


def _signal(found: Sequence[Found], services: Sequence[Service], sig: signal.Signals) -> None:
    """sig to each process and to the process groups `up` made (children started since)."""
    leaders = {s.pid for s in services} | {f.process.pid for f in found}
    groups: set[int] = set()
    if hasattr(os, "killpg"):
        for f in found:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(f.process.pid))
        groups = (groups & leaders) - {os.getpgrp()}  # never our own group
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, sig)
    for f in found:
        with contextlib.suppress(psutil.Error):
            f.process.send_signal(sig)  # psutil checks it is still the same process


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop(state_dir: Path, services: Sequence[Service], timeout: float = 15.0) -> list[Found]:
    """SIGTERM every process of the stack, SIGKILL what is still found after timeout; returns
    what ran. StackError if something survives (another user's process, say)."""
    stopped: dict[int, Found] = {}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0), (signal.SIGKILL, 5.0)):
        found = find_processes(state_dir, services)  # again: children started meanwhile
        if not found:
            break
        for f in found:
            stopped.setdefault(f.process.pid, f)
        _signal(found, services, sig)
        _wait_gone([f.process for f in found], wait)
    left = find_processes(state_dir, services)
    if left:
        raise StackError(f"could not stop {_listed(left)}")
    return sorted(stopped.values(), key=lambda f: f.process.pid)


def _alive(service: Service) -> bool:
    """The service's own process still runs (not a stranger that reused the pid)."""
    return _process(service) is not None


# --- up ----------------------------------------------------------------------------------------


def _bin(name: str) -> list[str]:
    """A tool of this environment (prefect, mlflow) as this interpreter's `-m`, whatever PATH says.

    (So its command line reads `python -m mlflow ...`: the tool's name, not a console
    script's interpreter.)
    """
    return [sys.executable, "-m", name]


def _env(cfg: StackConfig, api_url: str, tracking_uri: str) -> dict[str, str]:
    from fmnist.experiments import stage_env

    return stage_env(
        {
            "PREFECT_HOME": str(cfg.state_dir / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "FMNIST_ROOT": str(cfg.root),
            **cfg.env,
            MARKER: _marker(cfg.state_dir),
        }
    )


def _start(
    name: str, cmd: list[str], env: Mapping[str, str], cfg: StackConfig, url: str, health: str
) -> Service:
    logs = cfg.state_dir / "logs"
    _private_dir(cfg.state_dir)
    _private_dir(logs)
    log = logs / f"{name}.log"  # servers may print what they connect to: 0600
    out = _private_file(log, os.O_WRONLY | os.O_APPEND)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cfg.root,
            env={**env, MARKER: _marker(cfg.state_dir), SERVICE_MARKER: name},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and group: down finds and stops its children
        )
    finally:
        os.close(out)
    started = psutil.Process(proc.pid).create_time()  # ours until reaped: it cannot be reused
    shown = [redact(arg, _passwords(cmd)) for arg in cmd]
    return Service(name, proc.pid, shown, url, health, str(log), started)


def _wait_healthy(service: Service, timeout: float, secrets: Iterable[str] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(service.health_url):
            return
        if not _alive(service):
            break
        time.sleep(0.5)
    tail = redact(_log_tail(Path(service.log)), secrets)
    state = "exited" if not _alive(service) else f"no answer after {timeout:.0f} s"
    raise StackError(f"{service.name} {state} at {service.health_url}; log {service.log}: {tail}")


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def _run(cmd: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    env = {**env, SERVICE_MARKER: "setup"}  # found and stopped like the services, if left
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise StackError(f"{what} failed: {redact(lines[-1], _passwords(env.values()))}")


def up(cfg: StackConfig, echo: Callable[[str], None] = print) -> list[Service]:
    """Start server, work pool, deployments, worker and MLflow; each answers its health check."""
    previous = load_services(cfg.state_dir)  # DamagedRecord: the user runs `down` first
    running = find_processes(cfg.state_dir, previous)
    if running:
        raise StackError(f"a previous stack still runs: {_listed(running)}; run `make down` first")
    for name, port in (("Prefect", cfg.prefect_port), ("MLflow", cfg.mlflow_port)):
        if _port_busy(port):
            by = ", ".join(_port_holders(port))
            raise StackError(
                f"127.0.0.1:{port} is in use{' by ' if by else ''}{by}; {name} needs it "
                "(stop it or pick one)"
            )
    _private_dir(cfg.state_dir)
    from fmnist.tracking import resolve_tracking_uri

    store = cfg.mlflow_backend_uri or resolve_tracking_uri(cfg.tracking_uri, cfg.root)
    # Runs write to the store directly (sqlite, the default) or through the server.
    runs_uri = f"http://127.0.0.1:{cfg.mlflow_port}" if cfg.mlflow_backend_uri else store
    api = f"http://127.0.0.1:{cfg.prefect_port}/api"
    env = _env(cfg, api, runs_uri)
    services: list[Service] = []
    try:
        _up_prefect(cfg, env, api, services, echo)
        _up_mlflow(cfg, env, store, services, echo)
    except BaseException:
        with contextlib.suppress(StackError):  # the error that stopped `up` is the one to show
            stop(cfg.state_dir, services)
        (cfg.state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    _write_prefect_toml(cfg.root, api)
    return services


def _launch(
    services: list[Service],
    cfg: StackConfig,
    name: str,
    cmd: list[str],
    env: Mapping[str, str],
    url: str,
    health: str,
    timeout: float,
) -> None:
    """Start a service, record it at once (so even a killed `up` can be taken down), and
    wait for its health check."""
    services.append(_start(name, cmd, env, cfg, url, health))
    _save(cfg, services)
    _wait_healthy(services[-1], timeout, _passwords(env.values()))


def _up_prefect(
    cfg: StackConfig,
    env: Mapping[str, str],
    api: str,
    services: list[Service],
    echo: Callable[[str], None],
) -> None:
    ui = api.removesuffix("/api")
    server_cmd = [
        *(*_bin("prefect"), "server", "start"),
        *("--host", "127.0.0.1", "--port", str(cfg.prefect_port)),
    ]
    server_env = dict(env)
    if cfg.prefect_database_url:  # by environment only: never on a command line
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cfg.prefect_database_url
    health = f"{api}/health"
    _launch(services, cfg, "prefect-server", server_cmd, server_env, ui, health, timeout=120)
    echo(f"Prefect server  {ui}")
    _run(
        [*_bin("prefect"), "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
        env,
        cfg.root,
        f"creating work pool {WORK_POOL!r}",
    )
    if cfg.deploy:
        _run([*_bin("prefect"), "--no-prompt", "deploy", "--all"], env, cfg.root, "prefect deploy")
        echo(f"deployed        {cfg.root / 'prefect.yaml'} (work pool {WORK_POOL!r})")
    worker_port = cfg.worker_port or free_port()
    worker_env = {
        **env,
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "PREFECT_WORKER_WEBSERVER_PORT": str(worker_port),
        # Ask for new runs every 2 s, not 10: a local worker picking up a run `prefect
        # deployment run` just made is the latency users feel.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    worker_cmd = [
        *(*_bin("prefect"), "worker", "start", "--pool", WORK_POOL, "--type", "process"),
        *("--name", f"fmnist-{worker_port}", "--with-healthcheck"),
    ]
    health = f"http://127.0.0.1:{worker_port}/health"
    _launch(services, cfg, "prefect-worker", worker_cmd, worker_env, health, health, timeout=90)
    echo(f"Prefect worker  pool {WORK_POOL!r}, health {health}")


def mlflow_command(cfg: StackConfig, store: str) -> tuple[list[str], dict[str, str]]:
    """The MLflow server's command line, and the environment that carries its store and
    artifact locations (`mlflow server` reads them there): `ps` shows no password."""
    cmd = [
        *(*_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(cfg.mlflow_port)),
        *("--workers", "1"),
    ]
    env = {
        "MLFLOW_BACKEND_STORE_URI": store,
        "MLFLOW_ARTIFACTS_DESTINATION": cfg.mlflow_artifacts or str(cfg.root / "mlruns"),
        # No job runner: its worker pool (GenAI evaluation jobs) is a dozen idle processes here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return cmd, env


def _up_mlflow(
    cfg: StackConfig,
    env: Mapping[str, str],
    tracking_uri: str,
    services: list[Service],
    echo: Callable[[str], None],
) -> None:
    url = f"http://127.0.0.1:{cfg.mlflow_port}"
    cmd, server_env = mlflow_command(cfg, tracking_uri)
    env = {**env, **server_env}
    _launch(services, cfg, "mlflow-server", cmd, env, url, f"{url}/health", timeout=120)
    echo(f"MLflow UI       {url} (store {redact(tracking_uri)})")


def _write_prefect_toml(root: Path, api: str) -> None:
    """Point Prefect commands run in the repo (`prefect deployment run ...`) at this server."""
    path = root / PREFECT_TOML
    if path.exists() and _TOML_MARK not in path.read_text(encoding="utf-8"):
        return  # the user's own settings file: never touched
    path.write_text(f'{_TOML_MARK}\n[api]\nurl = "{api}"\n', encoding="utf-8")


# --- down, status ------------------------------------------------------------------------------


def down(root: Path, state_dir: Path) -> Stopped:
    """Stop every process of the stack, recorded or found by its marker; remove the record
    (damaged or not) and the prefect.toml `up` wrote."""
    damaged = None
    try:
        services = load_services(state_dir)
    except DamagedRecord as exc:
        services, damaged = [], exc.why
    found = stop(state_dir, services)
    for name in (STATE_FILE, Path(STATE_FILE).with_suffix(".partial").name):
        (state_dir / name).unlink(missing_ok=True)
    toml = root / PREFECT_TOML
    if toml.exists() and _TOML_MARK in toml.read_text(encoding="utf-8"):
        toml.unlink()
    names = dict.fromkeys([s.name for s in services] + [f.service for f in found if f.service])
    claimed = {f.service for f in found}
    return Stopped(
        [name for name in names if name in claimed],
        [f.describe() for f in found if f.service is None],
        damaged,
    )


def status(state_dir: Path) -> StackStatus:
    """Each recorded service (healthy only if its own process runs and answers), the
    orphans of those whose process died, and other processes carrying the marker."""
    services = load_services(state_dir)
    found = find_processes(state_dir, services)
    rows = []
    for service in services:
        mine = [f for f in found if f.service == service.name]
        top = any(f.top for f in mine)
        state = "stopped" if not mine else "running"
        if top and healthy(service.health_url):
            state = "healthy"
        orphans = [] if top else [f.describe() for f in mine]
        rows.append(ServiceStatus(service, state, orphans))
    recorded = {s.name for s in services}
    others = [f for f in found if f.service not in recorded]
    return StackStatus(rows, [f"{f.service or '?'} {f.describe()}" for f in others])
