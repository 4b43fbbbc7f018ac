"""The champion at work: classify image files, or serve it over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fmnist.cli.app import ParamsOpt, TrackingOpt, app, load_params, tracking_uri, user_errors
from fmnist.process.layout import PARAMS


@app.command()
@user_errors
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
@user_errors
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
