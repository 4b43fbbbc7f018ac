"""The registered model: list its versions, promote one by hand, roll `champion` back; the
champion at work: classify image files, serve it over HTTP, score a batch (with its drift
check against the training data; the batch-score flow does the same and can retrain)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import PARAMS, ParamsOpt, TrackingOpt, app, load_params, tracking_uri


@app.command()
def models(params: ParamsOpt = PARAMS, tracking_uri_: TrackingOpt = None) -> None:
    """The registered model's versions: aliases, test accuracy, optimizer, created."""
    from fmnist.registry.versions import list_versions

    name = load_params(params).register_.model_name
    rows = list_versions(tracking_uri(tracking_uri_), name)
    if not rows:
        typer.echo(f"{name}: no versions yet (run `make run`)")
        return
    typer.echo(f"{'version':>7}  {'aliases':22}  {'test_accuracy':>13}  {'optimizer':9}  created")
    for r in rows:
        aliases = " ".join(f"@{a}" for a in r.aliases)
        typer.echo(
            f"{r.version:>7}  {aliases:22}  {r.test_accuracy:>13}  {r.optimizer:9}  {r.created}"
        )


@app.command()
def promote(
    version: Annotated[int, typer.Option(help="The version to make `champion`.")],
    force: Annotated[
        bool,
        typer.Option(help="Promote below register.min_accuracy, or if its run did not finish."),
    ] = False,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Make a version `champion` by hand (it must reach register.min_accuracy unless --force)."""
    from fmnist.registry.promotion import by_hand_lines
    from fmnist.registry.register import promote as promote_version

    p = load_params(params)
    decision = promote_version(p, version, force, tracking_uri(tracking_uri_))
    for line in by_hand_lines(p.register_.model_name, version, decision):
        typer.echo(line)


@app.command()
def rollback(params: ParamsOpt = PARAMS, tracking_uri_: TrackingOpt = None) -> None:
    """Give `champion` back to the version that held it before."""
    from fmnist.registry.champion import rollback as rollback_champion

    name = load_params(params).register_.model_name
    before, after = rollback_champion(tracking_uri(tracking_uri_), name)
    typer.echo(f"{name}: @champion moved back from v{before} to v{after}")


@app.command()
def predict(
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files: PNG of any bit depth and colour (28x28 grayscale best)."),
    ],
    version: Annotated[
        int | None, typer.Option(min=1, help="Classify with this version, not the champion.")
    ] = None,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Classify images with the champion model (or --version); prints each file's class."""
    from fmnist.serving.loading import run_predict

    found, rows = run_predict(load_params(params), images, tracking_uri(tracking_uri_), version)
    held = f" ({' '.join(f'@{a}' for a in found.aliases)})" if found.aliases else ""
    typer.echo(f"classified by {found.name} v{found.version}{held}:")
    for row in rows:
        note = f"  ({row['note']})" if row["note"] else ""
        typer.echo(f"{row['image']}: {row['label']} (p={row['probability']:.3f}){note}")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    max_request_mb: Annotated[
        float,
        typer.Option(min=0.001, help="Largest request body in MB (10^6 bytes); larger get 413."),
    ] = 50.0,
    poll_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between looks at @champion: a version it moves to is loaded, warmed "
            "up and swapped in without dropping a request. 0: never (keep the first).",
        ),
    ] = 10.0,
    params: ParamsOpt = PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Serve the champion (fmnist's scoring server): POST raw 0-255 pixels to /invocations."""
    from fmnist.serving.loading import load_champion
    from fmnist.serving.server import bind, serve

    p = load_params(params)
    uri = tracking_uri(tracking_uri_)
    sock = bind(host, port)  # a busy port is said before the model loads
    served = load_champion(uri, p.register_.model_name)  # a clear error if there is none
    limit = int(max_request_mb * 1e6)
    serve(sock, served, limit, typer.echo, tracking_uri=uri, poll_seconds=poll_seconds)


@app.command()
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
