"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store, all on
127.0.0.1. `up` starts the services in order (all stopped if one fails), `down` stops every
process of the stack, `status` tells what runs.

How it knows its processes (psutil: the same on Linux and macOS, no /proc): `up` starts each
service in its own session with the marker `FMNIST_STACK=<state dir>` in its environment,
which every child inherits, and records its pid, create_time and (redacted) command line in
`<state>/stack.json`. A service's processes are the recorded one (if its create_time matches:
else the pid was reused), its descendants, every process carrying the marker (orphans are
reparented but keep their environment) and what is still in its session. `down` SIGTERMs the
process groups and each process found, waits, then SIGKILLs the rest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from fmnist.stack.processes import MARKER as MARKER
from fmnist.stack.processes import Found as Found
from fmnist.stack.processes import find_processes, listed, port_busy, port_holders, stop
from fmnist.stack.processes import free_port as free_port
from fmnist.stack.record import (
    STATE_FILE,
    DamagedRecord,
    Service,
    StackConfig,
    StackError,
    load_services,
)
from fmnist.stack.record import redact as redact
from fmnist.stack.services import PREFECT_TOML as PREFECT_TOML
from fmnist.stack.services import (
    Echo,
    healthy,
    remove_prefect_toml,
    service_env,
    up_mlflow,
    up_prefect,
    write_prefect_toml,
)
from fmnist.stack.services import mlflow_command as mlflow_command


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
    running = find_processes(cfg.state_dir, load_services(cfg.state_dir))  # DamagedRecord: down
    if running:
        raise StackError(f"a previous stack still runs: {listed(running)}; run `make down` first")
    for name, port in (("Prefect", cfg.prefect_port), ("MLflow", cfg.mlflow_port)):
        if port_busy(port):
            by = ", ".join(port_holders(port))
            raise StackError(
                f"127.0.0.1:{port} is in use{' by ' if by else ''}{by}; {name} needs it "
                "(stop it or pick one)"
            )
    from fmnist.tracking.mlflow_store import resolve_tracking_uri

    store = cfg.mlflow_backend_uri or resolve_tracking_uri(cfg.tracking_uri, cfg.root)
    # Runs write to the store directly (sqlite, the default) or through the server.
    runs_uri = f"http://127.0.0.1:{cfg.mlflow_port}" if cfg.mlflow_backend_uri else store
    api = f"http://127.0.0.1:{cfg.prefect_port}/api"
    env = service_env(cfg, api, runs_uri)
    services: list[Service] = []
    try:
        up_prefect(cfg, env, services, echo)
        up_mlflow(cfg, env, store, services, echo)
    except BaseException:
        with contextlib.suppress(StackError):  # the error that stopped `up` is the one to show
            stop(cfg.state_dir, services)
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
    found = stop(state_dir, services)
    unsaved = state_dir.glob(".stack.*.json")  # what an `up` killed while saving left
    for path in [state_dir / STATE_FILE, *unsaved, state_dir / "stack.partial"]:  # (older fmnist)
        path.unlink(missing_ok=True)
    remove_prefect_toml(root)
    names = dict.fromkeys([s.name for s in services] + [f.service for f in found if f.service])
    claimed = {f.service for f in found}
    return Stopped(
        [name for name in names if name in claimed],
        [f.describe() for f in found if f.service is None],
        damaged,
    )


def status(state_dir: Path) -> StackStatus:
    """Each recorded service (healthy if its own process runs and answers), the orphans of
    those whose process died, and other processes carrying the marker."""
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
