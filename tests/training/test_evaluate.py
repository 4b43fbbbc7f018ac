"""The evaluate stage: its faults leave the training's run as it was; the training curves it
adds to the run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError
from fmnist.training import evaluate as evaluate_stage
from fmnist.training import train as train_stage
from tests.training.outputs import evaluate_outputs, train_outputs


@pytest.mark.slow
def test_evaluate_of_a_missing_model_leaves_the_run_alone(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    out = train_outputs(tmp_path)
    train_stage.run(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    out.model.unlink()
    with pytest.raises(DataIntegrityError, match="model.keras: missing"):
        evaluate_stage.run(
            tiny_params,
            out.model,
            prepared_dir,
            out.trained,
            evaluate_outputs(tmp_path),
            tracking_uri,
        )
    run_id = json.loads(out.trained.read_text())["run_id"]
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"


def test_curves_show_loss_and_accuracy_per_epoch() -> None:
    history = {
        "loss": [0.9, 0.5, 0.4],
        "val_loss": [0.8, 0.6, 0.5],
        "accuracy": [0.7, 0.8, 0.85],
        "val_accuracy": [0.72, 0.79, 0.83],
    }
    figure = evaluate_stage.curves_figure(history)
    loss, accuracy = figure.axes
    assert (loss.get_title(), accuracy.get_title()) == ("loss", "accuracy")
    assert [list(line.get_ydata()) for line in loss.lines] == [history["loss"], history["val_loss"]]
    assert list(accuracy.lines[0].get_xdata()) == [1, 2, 3]  # epochs count from 1, as logged
    png = io.BytesIO()
    figure.savefig(png, format="png")
    assert png.getvalue()[:4] == b"\x89PNG"
