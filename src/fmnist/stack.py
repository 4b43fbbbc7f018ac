"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store.

Everything binds 127.0.0.1. `up` records each process it starts (pid, command line) in
`<state>/stack.json`; `down` stops exactly those processes, and only if the pid still runs
the recorded command (a pid reused by another program is left alone).
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
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fmnist.errors import FmnistError

STATE_FILE = "stack.json"
WORK_POOL = "fmnist"
PREFECT_TOML = "prefect.toml"
_TOML_MARK = "# written by `make up` (fmnist stack); `make down` removes it"


class StackError(FmnistError):
    """The local stack could not start, or is in a state that needs the user's hand."""

    exit_code = 7


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which loopback ports it takes."""

    root: Path
    state_dir: Path
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
    """One process `up` started."""

    name: str
    pid: int
    cmdline: list[str]
    url: str
    health_url: str
    log: str


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


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The URL answers 200 (loopback only; the stack never talks elsewhere)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _bin(name: str) -> list[str]:
    """A tool of this environment (prefect, mlflow) as this interpreter's `-m`, whatever PATH says.

    (So /proc/PID/cmdline reads back exactly as started: a console script would show its
    interpreter first.)
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
        }
    )


def _start(
    name: str, cmd: list[str], env: Mapping[str, str], cfg: StackConfig, url: str, health: str
) -> Service:
    log = cfg.state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cfg.root,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: down stops its children too
        )
    return Service(name, proc.pid, cmd, url, health, str(log))


def _wait_healthy(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(service.health_url):
            return
        if not _alive(service):
            break
        time.sleep(0.5)
    tail = _log_tail(Path(service.log))
    state = "exited" if not _alive(service) else f"no answer after {timeout:.0f} s"
    raise StackError(f"{service.name} {state} at {service.health_url}; log {service.log}: {tail}")


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def _run(cmd: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise StackError(f"{what} failed: {lines[-1]}")


def _save(cfg: StackConfig, services: list[Service]) -> None:
    path = cfg.state_dir / STATE_FILE
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps([asdict(s) for s in services], indent=2), encoding="utf-8")
    tmp.replace(path)


def load_services(state_dir: Path) -> list[Service]:
    """What the last `up` started (empty when the stack is down)."""
    try:
        return [Service(**s) for s in json.loads((state_dir / STATE_FILE).read_text())]
    except FileNotFoundError:
        return []


def up(cfg: StackConfig, echo: Callable[[str], None] = print) -> list[Service]:
    """Start server, work pool, deployments, worker and MLflow; each answers its health check."""
    if any(_alive(s) for s in load_services(cfg.state_dir)):
        raise StackError(f"already up (see {cfg.state_dir / STATE_FILE}); run `make down` first")
    for name, port in (("Prefect", cfg.prefect_port), ("MLflow", cfg.mlflow_port)):
        if _port_busy(port):
            raise StackError(f"127.0.0.1:{port} is in use; {name} needs it (stop it or pick one)")
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
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
        stop(services)
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
    _wait_healthy(services[-1], timeout)


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
    if cfg.prefect_database_url:
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


def _up_mlflow(
    cfg: StackConfig,
    env: Mapping[str, str],
    tracking_uri: str,
    services: list[Service],
    echo: Callable[[str], None],
) -> None:
    url = f"http://127.0.0.1:{cfg.mlflow_port}"
    cmd = [
        *(*_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(cfg.mlflow_port)),
        *("--backend-store-uri", tracking_uri, "--workers", "1"),
        *("--artifacts-destination", cfg.mlflow_artifacts or str(cfg.root / "mlruns")),
    ]
    # No job runner: its worker pool (GenAI evaluation jobs) is a dozen idle processes here.
    env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    _launch(services, cfg, "mlflow-server", cmd, env, url, f"{url}/health", timeout=120)
    echo(f"MLflow UI       {url} (store {_redacted(tracking_uri)})")


def _redacted(uri: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = uri.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return uri
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _write_prefect_toml(root: Path, api: str) -> None:
    """Point Prefect commands run in the repo (`prefect deployment run ...`) at this server."""
    path = root / PREFECT_TOML
    if path.exists() and _TOML_MARK not in path.read_text(encoding="utf-8"):
        return  # the user's own settings file: never touched
    path.write_text(f'{_TOML_MARK}\n[api]\nurl = "{api}"\n', encoding="utf-8")


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _alive(service: Service) -> bool:
    """The pid still runs the command `up` started (not a stranger that reused the pid)."""
    for _ in range(40):  # cmdline reads empty for a moment while a process execs
        cmdline = _cmdline(service.pid)
        if cmdline:
            return cmdline == service.cmdline
        if cmdline is None or _zombie(service.pid):
            return False
        time.sleep(0.05)
    return False


def stop(services: list[Service], timeout: float = 15.0) -> list[str]:
    """SIGTERM each service's process group, SIGKILL what is left after timeout."""
    running = [s for s in services if _alive(s)]
    for service in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(s) for s in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for service in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)  # the group: flow runs, uvicorn children
    return [s.name for s in running]


def down(root: Path, state_dir: Path) -> list[str]:
    """Stop what `up` started; returns the names stopped."""
    stopped = stop(load_services(state_dir))
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    toml = root / PREFECT_TOML
    if toml.exists() and _TOML_MARK in toml.read_text(encoding="utf-8"):
        toml.unlink()
    return stopped


def status(state_dir: Path) -> list[tuple[Service, bool, bool]]:
    """Each recorded service: (service, running, answering its health check)."""
    return [(s, _alive(s), _alive(s) and healthy(s.health_url)) for s in load_services(state_dir)]
