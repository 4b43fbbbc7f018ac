"""`fmnist stack up / down / status`: start the services in order (all stopped if one fails),
stop every process of the stack, tell what runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fmnist.stack.processes import find_processes, listed, port_busy, port_holders, stop
from fmnist.stack.record import (
    STATE_FILE,
    DamagedRecord,
    Service,
    StackConfig,
    StackError,
    load_services,
    private_dir,
    remove,
)
from fmnist.stack.services import (
    healthy,
    remove_prefect_toml,
    service_env,
    up_mlflow,
    up_prefect,
    write_prefect_toml,
)


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


def up(cfg: StackConfig, echo: Callable[[str], None] = print) -> list[Service]:
    """Start server, work pool, deployments, worker and MLflow; each answers its health check."""
    previous = load_services(cfg.state_dir)  # DamagedRecord: the user runs `down` first
    running = find_processes(cfg.state_dir, previous)
    if running:
        raise StackError(f"a previous stack still runs: {listed(running)}; run `make down` first")
    for name, port in (("Prefect", cfg.prefect_port), ("MLflow", cfg.mlflow_port)):
        if port_busy(port):
            by = ", ".join(port_holders(port))
            raise StackError(
                f"127.0.0.1:{port} is in use{' by ' if by else ''}{by}; {name} needs it "
                "(stop it or pick one)"
            )
    private_dir(cfg.state_dir)
    from fmnist.tracking.mlflow_store import resolve_tracking_uri

    store = cfg.mlflow_backend_uri or resolve_tracking_uri(cfg.tracking_uri, cfg.root)
    # Runs write to the store directly (sqlite, the default) or through the server.
    runs_uri = f"http://127.0.0.1:{cfg.mlflow_port}" if cfg.mlflow_backend_uri else store
    api = f"http://127.0.0.1:{cfg.prefect_port}/api"
    env = service_env(cfg, api, runs_uri)
    services: list[Service] = []
    try:
        up_prefect(cfg, env, api, services, echo)
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
    remove(state_dir)
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
