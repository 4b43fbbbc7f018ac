"""`fmnist sweep` (the tutorial's optimizer comparison: an Optuna study on a grid) and `fmnist
search` (Optuna over plain Dense networks), without Prefect (tuning.search)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fmnist.cli.app import PARAMS, ParamsOpt, TrackingOpt, app, load_params

if TYPE_CHECKING:
    from fmnist.tuning.search import SearchResult

Workers = Annotated[
    int | None,
    typer.Option(help="Local Dask workers, one trial each (default: one per CPU).", min=1),
]
DaskAddress = Annotated[
    str | None, typer.Option(help="A Dask scheduler (tcp://host:port) instead of a local cluster.")
]


@app.command()
def sweep(
    optimizer: Annotated[
        list[str] | None,
        typer.Option(help="An optimizer of the grid (repeat it); default the tutorial's four."),
    ] = None,
    activation: Annotated[
        list[str] | None,
        typer.Option(help="A hidden activation of the grid (repeat it); default sigmoid, relu."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs for every training.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size for every training.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="For every training.")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="Trainings at a time: local Dask workers (default: one per CPU).", min=1),
    ] = None,
    dask_address: DaskAddress = None,
    name: Annotated[
        str | None,
        typer.Option(help="The sweep's name (default sweep-<time>); a name again continues it."),
    ] = None,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Train every cell of the grid (optimizers x activations) as a trial of an Optuna study
    (GridSampler) on Dask, each a nested MLflow run, then write the best by validation accuracy
    back as a DVC experiment that trains, evaluates and registers it (the promotion rule)."""
    import time

    from fmnist.params import config
    from fmnist.params.overrides import RunOverrides, dotted_overrides
    from fmnist.tuning.space import ACTIVATIONS, OPTIMIZERS, Tuning, grid
    from fmnist.tuning.workers import tune_on_dask

    sweep_name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    cells = grid(optimizer or OPTIMIZERS, activation or ACTIVATIONS)
    base = RunOverrides(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    hidden = [h.model_dump(mode="json") for h in load_params(params).model.hidden]
    cfg = config.load_params(params, dotted_overrides(base, hidden))
    typer.echo(f"{sweep_name}: {len(cells.cells())} trainings, {jobs or 'one per CPU'} at a time")
    tuning = Tuning(sweep_name, cells)
    result = tune_on_dask(
        cfg, tuning, sweep_name, 0, jobs, dask_address, tracking_uri_, 0, typer.echo
    )
    typer.echo(f"\n{'training':18} {'val_accuracy':>12}  status")  # best first
    for row in result.table:
        shown = "-" if row["val_accuracy"] is None else row["val_accuracy"]
        typer.echo(f"{row['config']:18} {shown:>12}  {row['state']}")
    registered(result)


def registered(result: SearchResult) -> None:
    """The last lines: the version registered (or found), and the DVC experiment."""
    reg = result.registered
    aliases = " ".join(f"@{a}" for a in reg["aliases"])
    tested = f", test_accuracy {result.test_accuracy:.4f}" if result.test_accuracy else ""
    typer.echo(f"registered {reg['name']} v{reg['version']} {aliases}{tested}: {reg['promotion']}")
    if result.experiment:
        typer.echo(
            f"DVC experiment {result.experiment}: `dvc exp apply {result.experiment}` puts its "
            "params and outputs in the workspace (`dvc repro` then has nothing to rerun)"
        )


@app.command()
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
