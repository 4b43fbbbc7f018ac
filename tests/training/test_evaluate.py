"""The evaluate stage: its faults leave the training's run as it was; the training curves it
adds to the run; the test metrics from predicted probabilities."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.metrics import log_loss

from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError
from fmnist.training import evaluate as evaluate_stage
from fmnist.training import train as train_stage
from fmnist.training.metrics import evaluate_predictions, flat_class_metrics
from fmnist_model.images import CLASS_NAMES
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


# ---------------------------------------------------------------- test metrics


def probabilities(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Class probabilities that put 0.9 on the true class where `right`, else on the next one."""
    n = labels.shape[0]
    proba = np.full((n, 10), 0.1 / 9)
    target = np.where(right, labels, (labels + 1) % 10)
    proba[np.arange(n), target] = 0.9
    return proba


def test_metrics() -> None:
    labels = np.arange(100) % 10
    right = np.arange(100) < 80
    result = evaluate_predictions(labels, probabilities(labels, right))
    assert result.test_accuracy == pytest.approx(0.8)
    assert result.test_loss == pytest.approx(
        log_loss(labels, probabilities(labels, right)), rel=1e-6
    )
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == 100
    assert np.trace(result.confusion) == 80
    assert list(result.per_class) == list(CLASS_NAMES)
    assert result.per_class["Bag"]["support"] == 10


def test_cross_entropy_clips_like_keras() -> None:
    proba = np.zeros((1, 10))
    proba[0, 3] = 1.0
    loss = evaluate_predictions(np.array([0]), proba).test_loss
    assert loss == pytest.approx(-np.log(1e-7))


def test_flat_names() -> None:
    flat = flat_class_metrics(
        {"T-shirt/top": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 3}}
    )
    assert flat == {
        "test_precision_t-shirt_top": 1.0,
        "test_recall_t-shirt_top": 0.5,
        "test_f1_t-shirt_top": 0.6,
    }
