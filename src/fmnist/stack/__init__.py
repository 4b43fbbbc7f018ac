"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store, all on
127.0.0.1. Each service is recorded at once (stack.json), so even a killed `up` can be undone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fmnist.stack import processes
from fmnist.stack.processes import find_processes, free_port, healthy, listed, port_busy
from fmnist.stack.record import (
    STATE_FILE,
    DamagedRecord,
    Service,
    StackConfig,
    StackError,
    load_services,
    passwords,
    redact,
    save,
)

WORK_POOL = "fmnist"
PREFECT_TOML = "prefect.toml"
_TOML_MARK = "# written by `make up` (fmnist stack); `make down` removes it"
_TIMEOUTS = {"prefect-server": 120, "prefect-worker": 90, "mlflow-server": 120}  # s, to health
Echo = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    service: Service
    state: str  # healthy / running / stopped
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


def up(cfg: StackConfig, echo: Echo = print) -> list[Service]:
    """Start server, work pool, deployments, worker and MLflow; each answers its health check."""
    running = find_processes(cfg.state_dir, load_services(cfg.state_dir))
    if running:  # (a DamagedRecord above: `down` first too)
        raise StackError(f"a previous stack still runs: {listed(running)}; run `make down` first")
    for name, port in (("Prefect", cfg.prefect_port), ("MLflow", cfg.mlflow_port)):
        if port_busy(port):
            by = ", ".join(processes.port_holders(port))
            raise StackError(
                f"127.0.0.1:{port} is in use{' by ' if by else ''}{by}; {name} needs it "
                "(stop it or pick one)"
            )
    from fmnist.pipeline.dvc_cli import stage_env
    from fmnist.tracking.mlflow_store import resolve_tracking_uri

    store = cfg.mlflow_backend_uri or resolve_tracking_uri(cfg.tracking_uri, cfg.root)
    # Runs write to the store directly (sqlite, the default) or through the server.
    runs_uri = f"http://127.0.0.1:{cfg.mlflow_port}" if cfg.mlflow_backend_uri else store
    api = f"http://127.0.0.1:{cfg.prefect_port}/api"
    env = stage_env(  # every process of the stack gets it
        {
            "PREFECT_HOME": str(cfg.state_dir / "prefect"),
            "PREFECT_API_URL": api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": runs_uri,
            "FMNIST_ROOT": str(cfg.root),
            **cfg.env,
            processes.MARKER: processes.marker(cfg.state_dir),
        }
    )
    services: list[Service] = []
    try:
        _up_prefect(cfg, env, services, echo)
        _up_mlflow(cfg, env, store, services, echo)
    except BaseException:
        with contextlib.suppress(StackError):  # the error that stopped `up` is the one to show
            processes.stop(cfg.state_dir, services)
        (cfg.state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    write_prefect_toml(cfg.root, api)
    return services


def down(root: Path, state_dir: Path) -> Stopped:
    """Stop every process of the stack; remove the record (damaged or not) and prefect.toml."""
    damaged = None
    try:
        services = load_services(state_dir)
    except DamagedRecord as exc:
        services, damaged = [], exc.why
    found = processes.stop(state_dir, services)
    unsaved = state_dir.glob(".stack.*.json")  # what an `up` killed while saving left
    for path in [state_dir / STATE_FILE, *unsaved, state_dir / "stack.partial"]:  # (older fmnist)
        path.unlink(missing_ok=True)
    if _toml_is_ours(root):
        (root / PREFECT_TOML).unlink()
    names = dict.fromkeys([s.name for s in services] + [f.service for f in found if f.service])
    claimed = {f.service for f in found}
    return Stopped(
        [name for name in names if name in claimed],
        [f.describe() for f in found if f.service is None],
        damaged,
    )


def status(state_dir: Path) -> StackStatus:
    """Each recorded service's state (orphans if its process died), other processes of the stack."""
    services = load_services(state_dir)
    found = find_processes(state_dir, services)
    rows = []
    for service in services:
        mine = [f for f in found if f.service == service.name]
        top = any(f.top for f in mine)
        state = (
            "healthy" if top and healthy(service.health_url) else "running" if mine else "stopped"
        )
        rows.append(ServiceStatus(service, state, [] if top else [f.describe() for f in mine]))
    recorded = {s.name for s in services}
    others = [f for f in found if f.service not in recorded]
    return StackStatus(rows, [f"{f.service or '?'} {f.describe()}" for f in others])


def write_prefect_toml(root: Path, api: str) -> None:
    """Point Prefect commands run in the repo at this server (never the user's own file)."""
    if not (root / PREFECT_TOML).exists() or _toml_is_ours(root):
        (root / PREFECT_TOML).write_text(f'{_TOML_MARK}\n[api]\nurl = "{api}"\n', encoding="utf-8")


def _toml_is_ours(root: Path) -> bool:
    path = root / PREFECT_TOML
    return path.exists() and _TOML_MARK in path.read_text(encoding="utf-8")


def _bin(name: str, *args: str) -> list[str]:
    """A tool of this environment as `python -m`: its command line names it, whatever PATH says."""
    return [sys.executable, "-m", name, *args]


def _run(cmd: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    env = {**env, processes.SERVICE_MARKER: "setup"}  # found and stopped like the services
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise StackError(f"{what} failed: {redact(lines[-1], passwords(env.values()))}")


def _launch(
    cfg: StackConfig, services: list[Service], service: Service, env: Mapping[str, str]
) -> None:
    """Record a started service at once, and wait for its health check."""
    services.append(service)
    save(cfg, services)
    processes.wait_healthy(service, _TIMEOUTS[service.name], passwords(env.values()))


def _up_prefect(cfg: StackConfig, env: dict[str, str], services: list[Service], echo: Echo) -> None:
    """Start the Prefect server, make the work pool and the deployments, start the worker."""
    api = env["PREFECT_API_URL"]
    ui = api.removesuffix("/api")
    server_cmd = _bin("prefect", "server", "start", "--host", "127.0.0.1")
    server_cmd += ["--port", str(cfg.prefect_port)]
    server_env = dict(env)
    if cfg.prefect_database_url:  # by environment only: never on a command line
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cfg.prefect_database_url
    server = processes.start("prefect-server", server_cmd, server_env, cfg, ui, f"{api}/health")
    _launch(cfg, services, server, server_env)
    echo(f"Prefect server  {ui}")
    pool = _bin("prefect", "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
    _run(pool, env, cfg.root, f"creating work pool {WORK_POOL!r}")
    _run(_bin("prefect", "--no-prompt", "deploy", "--all"), env, cfg.root, "prefect deploy")
    echo(f"deployed        {cfg.root / 'prefect.yaml'} (work pool {WORK_POOL!r})")
    port = free_port()
    worker_env = {
        **env,
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        # Ask for new runs every second, not 10: a local worker picking up a run `prefect
        # deployment run` just made is the latency users feel (one cheap loopback request).
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker_cmd = _bin("prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process")
    worker_cmd += ["--name", f"fmnist-{port}", "--with-healthcheck"]
    health = f"http://127.0.0.1:{port}/health"
    worker = processes.start("prefect-worker", worker_cmd, worker_env, cfg, health, health)
    _launch(cfg, services, worker, worker_env)
    echo(f"Prefect worker  pool {WORK_POOL!r}, health {health}")


def mlflow_command(cfg: StackConfig, store: str) -> tuple[list[str], dict[str, str]]:
    """The MLflow server's command line; its store and artifacts by environment (not in `ps`)."""
    port = str(cfg.mlflow_port)
    cmd = _bin("mlflow", "server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
    env = {
        "MLFLOW_BACKEND_STORE_URI": store,
        "MLFLOW_ARTIFACTS_DESTINATION": cfg.mlflow_artifacts or str(cfg.root / "mlruns"),
        # No job runner: its worker pool (GenAI evaluation jobs) is a dozen idle processes here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return cmd, env


def _up_mlflow(
    cfg: StackConfig, env: Mapping[str, str], store: str, services: list[Service], echo: Echo
) -> None:
    """Start the MLflow server on the tracking store."""
    url = f"http://127.0.0.1:{cfg.mlflow_port}"
    cmd, server_env = mlflow_command(cfg, store)
    env = {**env, **server_env}
    service = processes.start("mlflow-server", cmd, env, cfg, url, f"{url}/health")
    _launch(cfg, services, service, env)
    echo(f"MLflow UI       {url} (store {redact(store)})")
    # MLflow 3.17's UI opens an experiment on the GenAI overview unless this says otherwise
    echo(f"  experiments   {url}/#/experiments?workflowType=machine_learning")
