"""`fmnist search`: the Optuna search over plain Dense networks without Prefect (tuning.search)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import PARAMS, ParamsOpt, TrackingOpt, app, load_params, user_errors
from fmnist.cli.sweep import DaskAddress, Workers, registered


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
    workers: Workers = None,
    dask_address: DaskAddress = None,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Search networks and their training (params.yaml `search`) with Optuna: TPE, the median
    pruner on val_accuracy, trials in parallel on Dask, each a nested MLflow run; the study
    (FMNIST_SEARCH_STORAGE, default optuna.db) continues on the next run. The best is
    written back as a DVC experiment that trains, evaluates and registers it."""
    import time

    from fmnist.tuning.space import Tuning
    from fmnist.tuning.study import shown_url, storage_url
    from fmnist.tuning.workers import tune_on_dask

    cfg = load_params(params)
    n = trials or cfg.search.trials
    name = time.strftime("search-%Y%m%d-%H%M%S")
    where = dask_address or f"a local Dask cluster of {workers or min(n, os.cpu_count() or 1)}"
    study = f"study {cfg.search.study} ({shown_url(storage_url(Path.cwd()))})"
    typer.echo(f"{name}: {n} trials of {study} on {where}")
    tuning = Tuning(cfg.search.study)
    result = tune_on_dask(
        cfg, tuning, name, n, workers, dask_address, tracking_uri_, timeout, typer.echo
    )
    trials_line = ", ".join(f"{v} {k}" for k, v in result.trials.items() if v)
    typer.echo(f"study {cfg.search.study}: {trials_line}")
    if result.cost:
        typer.echo(f"this run: {result.cost.line()}")
    registered(result)
