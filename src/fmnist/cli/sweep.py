"""`fmnist sweep`: the tutorial's optimizer comparison without Prefect (fmnist.tuning.sweep)."""

from __future__ import annotations

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
    jobs: Annotated[int, typer.Option(help="Trainings at a time.", min=1)] = 1,
    name: Annotated[
        str | None, typer.Option(help="The sweep's name (default sweep-<time>).")
    ] = None,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Train the grid (optimizers x activations) as DVC experiments and nested MLflow runs,
    then register the best by validation accuracy and apply the promotion rule. No Prefect
    needed."""
    import time

    from fmnist.params.overrides import RunOverrides
    from fmnist.tuning import sweep as sweeping
    from fmnist.tuning.grid import ACTIVATIONS, OPTIMIZERS

    root = Path.cwd()
    sweep_name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    base = RunOverrides(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    plan = sweeping.plan(root, sweep_name, optimizer or OPTIMIZERS, activation or ACTIVATIONS, base)
    typer.echo(f"{sweep_name}: {len(plan)} trainings, {jobs} at a time")
    result = sweeping.run(
        load_params(params), root, sweep_name, plan, jobs, tracking_uri(tracking_uri_), typer.echo
    )
    widths = {
        "val_accuracy": 12,
        "val_loss": 8,
        "test_accuracy": 13,
        "test_loss": 9,
        "fit_seconds": 6,
    }
    heads = " ".join(f"{'fit s' if k == 'fit_seconds' else k:>{w}}" for k, w in widths.items())
    typer.echo(f"\n{'training':18} {heads}  status")  # best by val_accuracy first
    for row in result.rows:
        values = " ".join(f"{'-' if row[k] is None else row[k]:>{w}}" for k, w in widths.items())
        typer.echo(f"{row['training']:18} {values}  {row['status']}")
    reg = result.registered
    aliases = " ".join(f"@{a}" for a in reg["aliases"])
    typer.echo(f"registered {reg['name']} v{reg['version']} {aliases}: {reg['promotion']}")
