"""One command per DVC stage (dvc.yaml calls them), each calling its stage's run()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist.cli.app import ParamsOpt, TrackingOpt, app, load_params, said, tracking_uri
from fmnist.process import layout

# Paths that more than one stage takes, named once (defaults: fmnist.process.layout).
DataOpt = Annotated[Path, typer.Option(help="Folder of prepared splits.")]
ModelOpt = Annotated[Path, typer.Option(help="The model file (.keras).")]
TrainedOpt = Annotated[Path, typer.Option(help="Train's record: MLflow run and model (JSON).")]
SummaryOpt = Annotated[Path, typer.Option(help="The Keras summary text.")]
MetricsOpt = Annotated[Path, typer.Option(help="Metrics written (JSON).")]


def _line(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in values.items())


@app.command()
def download(
    out: Annotated[Path, typer.Option(help="Folder for the verified raw files.")] = layout.RAW,
    params: ParamsOpt = layout.PARAMS,
) -> None:
    """Fetch and verify the four Fashion-MNIST files (FMNIST_DATA_MIRROR is tried first)."""
    from fmnist.data import download as stage

    served = stage.run(load_params(params), out, os.environ.get(stage.MIRROR_ENV))
    for name, mirror in served.items():
        typer.echo(f"{out / name}: verified ({mirror})")


@app.command()
def prepare(
    raw: Annotated[Path, typer.Option(help="Folder of raw IDX files.")] = layout.RAW,
    out: Annotated[Path, typer.Option(help="Folder for the .npz splits.")] = layout.PREPARED,
    params: ParamsOpt = layout.PARAMS,
) -> None:
    """Split train/val as the tutorial does (raw pixels; the model's input scales by 255)."""
    from fmnist.data import prepare as stage

    sizes = stage.run(load_params(params), raw, out)
    typer.echo(" ".join(f"{split}={n}" for split, n in sizes.items()))


@app.command()
def train(
    data: DataOpt = layout.PREPARED,
    model: ModelOpt = layout.MODEL,
    summary: SummaryOpt = layout.SUMMARY,
    trained: TrainedOpt = layout.TRAINED,
    history: Annotated[Path, typer.Option(help="Per-epoch CSV.")] = layout.HISTORY,
    metrics: MetricsOpt = layout.TRAIN_METRICS,
    params: ParamsOpt = layout.PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Build, compile and fit the model from params; track everything in MLflow."""
    from fmnist.tracking.runs import PARENT_ENV
    from fmnist.training import train as stage

    outputs = stage.TrainOutputs(model, summary, trained, history, metrics)
    parent = os.environ.get(PARENT_ENV) or None  # a sweep's training: its run is the child
    uri = tracking_uri(tracking_uri_)
    typer.echo(_line(stage.run(load_params(params), data, outputs, uri, Path.cwd(), parent)))


@app.command()
def evaluate(
    model: ModelOpt = layout.MODEL,
    data: DataOpt = layout.PREPARED,
    trained: TrainedOpt = layout.TRAINED,
    metrics: MetricsOpt = layout.TEST_METRICS,
    classes: Annotated[Path, typer.Option(help="Per-class report.")] = layout.CLASSES,
    confusion_csv: Annotated[
        Path, typer.Option(help="Confusion plot data.")
    ] = layout.CONFUSION_CSV,
    confusion_png: Annotated[Path, typer.Option(help="Confusion image.")] = layout.CONFUSION_PNG,
    params: ParamsOpt = layout.PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Test loss and accuracy, per-class report, confusion matrix; logged to the train run."""
    from fmnist.training import evaluate as stage

    outputs = stage.EvaluateOutputs(metrics, classes, confusion_csv, confusion_png)
    uri = tracking_uri(tracking_uri_)
    typer.echo(_line(stage.run(load_params(params), model, data, trained, outputs, uri)))


@app.command()
def register(
    trained: TrainedOpt = layout.TRAINED,
    metrics: Annotated[
        Path, typer.Option(help="Test metrics to read (JSON).")
    ] = layout.TEST_METRICS,
    summary: SummaryOpt = layout.SUMMARY,
    out: Annotated[Path, typer.Option(help="Register's record (JSON).")] = layout.REGISTERED,
    params: ParamsOpt = layout.PARAMS,
    tracking_uri_: TrackingOpt = None,
) -> None:
    """Register the trained model as a new version with alias `challenger`."""
    from fmnist.registry import register as stage

    uri = tracking_uri(tracking_uri_)
    stage.run(load_params(params), trained, metrics, summary, out, uri, report=_say_registered)


def _say_registered(record: dict[str, Any]) -> None:
    """The registration's outcome, said while signals wait: no signal can then undo it."""
    aliases = " ".join(f"@{a}" for a in record["aliases"])
    typer.echo(f"registered {record['name']} version {record['version']} as {aliases}")
    typer.echo(f"promotion: {record['promotion']}")
    said(0)
