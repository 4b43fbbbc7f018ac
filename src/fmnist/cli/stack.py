"""`fmnist stack up|down|status`: the local stack (Prefect, worker, deployments, MLflow UI)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import Commands, TrackingOpt, app

stack_app = Commands(
    help="The local stack: Prefect server + worker + deployments, MLflow UI (127.0.0.1).",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
StateOpt = Annotated[Path, typer.Option(help="Where the stack keeps pids, logs, Prefect home.")]
STATE = Path(".stack")  # the default state folder (gitignored)


@stack_app.command("up")
def stack_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
    state: StateOpt = STATE,
    tracking_uri_: TrackingOpt = None,
    mlflow_backend_uri: Annotated[
        str | None,
        typer.Option(
            envvar="FMNIST_MLFLOW_BACKEND_URI",
            help="Production: the MLflow server's database (postgresql://...); runs then "
            "track through the server.",
        ),
    ] = None,
    mlflow_artifacts: Annotated[
        str | None,
        typer.Option(envvar="FMNIST_MLFLOW_ARTIFACTS", help="The MLflow server's artifact root."),
    ] = None,
    prefect_database_url: Annotated[
        str | None,
        typer.Option(
            envvar="FMNIST_PREFECT_DATABASE_URL",
            help="Production: Prefect's database (postgresql+asyncpg://...).",
        ),
    ] = None,
) -> None:
    """Start everything, wait until each answers its health check, print the URLs."""
    from fmnist.stack import StackConfig, redact, up

    if any(redact(arg) != arg for arg in sys.argv):
        typer.echo(
            "fmnist stack up: warning: a password on this command line is visible to every "
            "user (ps); set FMNIST_MLFLOW_BACKEND_URI / FMNIST_PREFECT_DATABASE_URL instead",
            err=True,
        )
    root = Path.cwd().resolve()
    cfg = StackConfig(
        root,
        (root / state).resolve(),
        prefect_port,
        mlflow_port,
        tracking_uri=tracking_uri_,
        mlflow_backend_uri=mlflow_backend_uri,
        mlflow_artifacts=mlflow_artifacts,
        prefect_database_url=prefect_database_url,
    )
    up(cfg, echo=typer.echo)
    api = f"http://127.0.0.1:{prefect_port}/api"
    typer.echo(
        f"\nUp. In this folder Prefect uses {api} (prefect.toml); elsewhere:\n"
        f"  export PREFECT_API_URL={api}\n"
        "Run the pipeline:\n  prefect deployment run 'fashion-mnist-pipeline/default' --watch"
    )


@stack_app.command("down")
def stack_down(state: StateOpt = STATE) -> None:
    """Stop the processes of the stack: those `stack up` recorded and their children."""
    from fmnist.stack import STATE_FILE, down

    stopped = down(Path.cwd().resolve(), state.resolve())
    if stopped.damaged:
        why = f"{state / STATE_FILE} was damaged ({stopped.damaged})"
        typer.echo(f"{why}; stopped what carries the stack's marker, removed the record", err=True)
    names = [*stopped.services, *(f"unrecorded {p}" for p in stopped.unrecorded)]
    typer.echo(f"stopped: {', '.join(names)}" if names else "nothing was running")


@stack_app.command("status")
def stack_status(state: StateOpt = STATE) -> None:
    """What `stack up` started: pid, healthy / running / stopped, URL, orphans."""
    from fmnist.stack import status

    report = status(state.resolve())
    if not report.services and not report.unrecorded:
        typer.echo("down (nothing recorded)")
    for row in report.services:
        line = f"{row.service.name:15} pid {row.service.pid:<7} {row.state:8} {row.service.url}"
        if row.orphans:
            line += f"  its process died; orphans still run: {', '.join(row.orphans)}"
        typer.echo(line)
    if report.unrecorded:
        typer.echo(f"unrecorded processes of this stack: {', '.join(report.unrecorded)}")
    if report.unrecorded or any(row.orphans for row in report.services):
        typer.echo("`make down` stops them all")
