"""What the stack starts (Prefect server, work pool, deployments, worker; the MLflow server):
command lines, environments, health checks, and the prefect.toml pointing Prefect commands in
the repo at the server. Each service is recorded at once, so even a killed `up` can be undone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import httpx
import psutil

from fmnist.stack.processes import MARKER, SERVICE_MARKER, alive, free_port, marker
from fmnist.stack.record import (
    Service,
    StackConfig,
    StackError,
    passwords,
    private_dir,
    redact,
    save,
)

WORK_POOL = "fmnist"
PREFECT_TOML = "prefect.toml"
_TOML_MARK = "# written by `make up` (fmnist stack); `make down` removes it"
_TIMEOUTS = {"prefect-server": 120, "prefect-worker": 90, "mlflow-server": 120}  # s, to health
Echo = Callable[[str], None]


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The URL answers 200 (loopback only; the stack never talks elsewhere)."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200  # no proxy
    except (httpx.HTTPError, httpx.InvalidURL):
        return False


def _bin(name: str, *args: str) -> list[str]:
    """A tool of this environment as this interpreter's `-m`, whatever PATH says (so its
    command line names the tool, not a console script's interpreter)."""
    return [sys.executable, "-m", name, *args]


def service_env(cfg: StackConfig, api_url: str, tracking_uri: str) -> dict[str, str]:
    """The environment of every process of the stack: addresses, stage env, cfg.env, marker."""
    from fmnist.pipeline.dvc_cli import stage_env

    return stage_env(
        {
            "PREFECT_HOME": str(cfg.state_dir / "prefect"),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "FMNIST_ROOT": str(cfg.root),
            **cfg.env,
            MARKER: marker(cfg.state_dir),
        }
    )


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


def wait_healthy(service: Service, timeout: float, secrets: Iterable[str] = ()) -> None:
    """Until the service answers its health check; StackError (its log's last line) if it
    exits or does not answer within timeout."""
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


def _run(cmd: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    env = {**env, SERVICE_MARKER: "setup"}  # found and stopped like the services, if left
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
    wait_healthy(service, _TIMEOUTS[service.name], passwords(env.values()))


def up_prefect(
    cfg: StackConfig, env: Mapping[str, str], services: list[Service], echo: Echo
) -> None:
    """Start the Prefect server, make the work pool and the deployments, start the worker."""
    api = env["PREFECT_API_URL"]
    ui = api.removesuffix("/api")
    server_cmd = _bin("prefect", "server", "start", "--host", "127.0.0.1")
    server_cmd += ["--port", str(cfg.prefect_port)]
    server_env = dict(env)
    if cfg.prefect_database_url:  # by environment only: never on a command line
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cfg.prefect_database_url
    server = start("prefect-server", server_cmd, server_env, cfg, ui, f"{api}/health")
    _launch(cfg, services, server, server_env)
    echo(f"Prefect server  {ui}")
    pool = _bin("prefect", "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
    _run(pool, env, cfg.root, f"creating work pool {WORK_POOL!r}")
    if cfg.deploy:
        _run(_bin("prefect", "--no-prompt", "deploy", "--all"), env, cfg.root, "prefect deploy")
        echo(f"deployed        {cfg.root / 'prefect.yaml'} (work pool {WORK_POOL!r})")
    port = cfg.worker_port or free_port()
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
    worker = start("prefect-worker", worker_cmd, worker_env, cfg, health, health)
    _launch(cfg, services, worker, worker_env)
    echo(f"Prefect worker  pool {WORK_POOL!r}, health {health}")


def mlflow_command(cfg: StackConfig, store: str) -> tuple[list[str], dict[str, str]]:
    """The MLflow server's command line, and the environment carrying its store and artifact
    locations (`mlflow server` reads them there): `ps` shows no password."""
    port = str(cfg.mlflow_port)
    cmd = _bin("mlflow", "server", "--host", "127.0.0.1", "--port", port, "--workers", "1")
    env = {
        "MLFLOW_BACKEND_STORE_URI": store,
        "MLFLOW_ARTIFACTS_DESTINATION": cfg.mlflow_artifacts or str(cfg.root / "mlruns"),
        # No job runner: its worker pool (GenAI evaluation jobs) is a dozen idle processes here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    return cmd, env


def up_mlflow(
    cfg: StackConfig, env: Mapping[str, str], store: str, services: list[Service], echo: Echo
) -> None:
    """Start the MLflow server on the tracking store."""
    url = f"http://127.0.0.1:{cfg.mlflow_port}"
    cmd, server_env = mlflow_command(cfg, store)
    env = {**env, **server_env}
    _launch(cfg, services, start("mlflow-server", cmd, env, cfg, url, f"{url}/health"), env)
    echo(f"MLflow UI       {url} (store {redact(store)})")
    # MLflow 3.17's UI opens an experiment on the GenAI overview unless this says otherwise
    echo(f"  experiments   {url}/#/experiments?workflowType=machine_learning")


def write_prefect_toml(root: Path, api: str) -> None:
    """Point Prefect commands run in the repo (`prefect deployment run ...`) at this server
    (the user's own prefect.toml is never touched)."""
    if not (root / PREFECT_TOML).exists() or _toml_is_ours(root):
        (root / PREFECT_TOML).write_text(f'{_TOML_MARK}\n[api]\nurl = "{api}"\n', encoding="utf-8")


def remove_prefect_toml(root: Path) -> None:
    """Remove the prefect.toml `up` wrote (the user's own is never touched)."""
    if _toml_is_ours(root):
        (root / PREFECT_TOML).unlink()


def _toml_is_ours(root: Path) -> bool:
    path = root / PREFECT_TOML
    return path.exists() and _TOML_MARK in path.read_text(encoding="utf-8")
