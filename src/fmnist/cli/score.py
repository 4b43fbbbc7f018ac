"""`fmnist score`: a batch classified by the champion (or a given version), with its drift
check against the training data; the batch-score flow does the same and can retrain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import ParamsOpt, TrackingOpt, app, load_params, tracking_uri, user_errors
from fmnist.process.layout import PARAMS


@app.command()
@user_errors
def score(
    input_: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A folder of images (PNG), an IDX images file (.gz or not), or a .npz of raw "
            "0-255 pixels (x: (n, 28, 28) or (n, 784)).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Predictions CSV [default: scores/<input's name>.csv]."),
    ] = None,
    version: Annotated[
        int | None, typer.Option(min=1, help="Score with this version, not the champion.")
    ] = None,
    monitor: Annotated[
        bool, typer.Option(help="Check the batch for drift against the training data.")
    ] = True,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Classify a batch; predictions file + an MLflow run in the scoring experiment."""
    import fmnist.monitoring.batch as batch_scoring
    from fmnist.monitoring import drift_check

    p, uri = load_params(params), tracking_uri(tracking_uri_)
    dest = out or batch_scoring.default_output(input_)
    root = Path.cwd() if monitor else None  # the drift reference is found from here
    done = batch_scoring.score_input(p, input_, dest, uri, version, root)
    for line in batch_scoring.report_lines(done.scored, p.score.experiment):
        typer.echo(line)
    if done.reference is not None:
        summary = drift_check.run(
            p, done.scored.run_id, done.pixels, done.proba, done.reference, uri
        )
        typer.echo(f"{summary.headline()} [reference: {done.reference.where}]")
