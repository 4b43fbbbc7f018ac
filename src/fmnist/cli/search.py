"""`fmnist search`: the Optuna search over plain Dense networks without Prefect (tuning.search)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import (
    PARAMS,
    ParamsOpt,
    TrackingOpt,
    app,
    load_params,
    tracking_uri,
    user_errors,
)


@app.command()
@user_errors
def search(
    trials: Annotated[
        int | None,
        typer.Option(help="Trials this run adds to the study (default: search.trials).", min=1),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds after which no trial starts (default: search.timeout; 0: none).", min=0
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Local Dask workers, one trial each (default: one per CPU).", min=1),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="A Dask scheduler (tcp://host:port) instead of a local cluster."),
    ] = None,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Search networks and their training (params.yaml `search`) with Optuna: TPE, the median
    pruner on val_accuracy, trials in parallel on Dask, each a nested MLflow run; the study
    (FMNIST_SEARCH_STORAGE, default optuna.db) continues on the next run. The best is
    written back as a DVC experiment that trains, evaluates and registers it."""
    import time

    from fmnist.pipeline import dvc_cli
    from fmnist.tracking.mlflow_store import open_store
    from fmnist.tuning import search as searching
    from fmnist.tuning.study import shown_url, storage_url

    root = Path.cwd()
    cfg = load_params(params)
    uri = tracking_uri(tracking_uri_)
    open_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the local workers' store (never a task argument)
    n = trials or cfg.search.trials
    n_workers = workers or max(1, min(n, os.cpu_count() or 1))
    env = dvc_cli.stage_env({"MLFLOW_TRACKING_URI": uri})
    dvc_cli.reproduce(root, "prepare", env, typer.echo)  # the data, once: trials read it
    name = time.strftime("search-%Y%m%d-%H%M%S")
    where = dask_address or f"a local Dask cluster of {n_workers}"
    study = f"study {cfg.search.study} ({shown_url(storage_url(root))})"
    typer.echo(f"{name}: {n} trials of {study} on {where}")
    with searching.search_run(uri, cfg, name, root, typer.echo) as parent:
        job = searching.jobs(root, cfg, parent, uri, n_workers, timeout)
        results = searching.run_trials(job, n, n_workers, dask_address, typer.echo)
        result = searching.finish(cfg, root, parent, results, uri, typer.echo)
    trials_line = ", ".join(f"{v} {k}" for k, v in result.trials.items() if v)
    typer.echo(f"study {cfg.search.study}: {trials_line}")
    if result.cost:
        typer.echo(f"this run: {result.cost.line()}")
    reg = result.registered
    aliases = " ".join(f"@{a}" for a in reg["aliases"])
    tested = f", test_accuracy {result.test_accuracy:.4f}" if result.test_accuracy else ""
    typer.echo(f"registered {reg['name']} v{reg['version']} {aliases}{tested}: {reg['promotion']}")
    if result.experiment:
        typer.echo(
            f"DVC experiment {result.experiment}: `dvc exp apply {result.experiment}` puts its "
            "params and outputs in the workspace (`dvc repro` then has nothing to rerun)"
        )
