"""The evaluate stage: the trained model's test metrics, per-class report and confusion matrix,
to files and to the training's MLflow run, with the training curves and the test dataset."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.process import layout
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import atomic_path, write_csv, write_json
from fmnist.tracking import runs as tracking
from fmnist.tracking.runs import log_datasets, split_input
from fmnist.training.metrics import (
    Evaluation,
    confusion_figure,
    evaluate_predictions,
    flat_class_metrics,
)
from fmnist_model.images import CLASS_NAMES, model_features

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")  # the training's per-epoch metrics


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: Path  # metrics/evaluate.json: test_loss, test_accuracy (DVC metrics)
    classes: Path  # metrics/classes.json: per-class precision, recall, f1 (DVC metrics)
    confusion_csv: Path  # plots/confusion.csv: actual,predicted per test image (DVC plot)
    confusion_png: Path  # plots/confusion.png


def load_model(path: Path) -> Any:
    """The .keras file, loaded as a registered version loads it to serve (the served metrics)."""
    from fmnist.process.imports import load_keras
    from fmnist_model.unicode_names import load_keras_model

    if not path.is_file():  # said before TensorFlow's seconds of import
        raise DataIntegrityError(f"{path}: missing (run `dvc repro train` first)")
    load_keras()  # the import itself, with Ctrl-C deferred to its end
    try:
        return load_keras_model(str(path))
    except (OSError, ValueError) as exc:
        raise DataIntegrityError(f"{path}: not a loadable Keras model ({exc})") from None


def run(
    params: Params,
    model_path: Path,
    data_dir: Path,
    trained_path: Path,
    out: EvaluateOutputs,
    tracking_uri: str,
) -> dict[str, float]:
    """The stage's outputs and the training's run's additions; returns the headline metrics."""
    x_test, y_test = load_split(data_dir / "test.npz")  # (n, 28, 28) uint8 pixels, (n,) uint8
    trained = records.read_trained(trained_path)
    model = load_model(model_path)
    x = model_features(x_test, len(model.input_shape))  # x / 255 in the model's input form
    proba = model.predict(x, batch_size=params.evaluate.batch_size, verbose=0)  # (n, 10)
    result = evaluate_predictions(y_test, proba)
    write_json(out.metrics, result.headline)
    write_json(out.classes, result.per_class)
    names = [
        [CLASS_NAMES[a], CLASS_NAMES[p]] for a, p in zip(y_test, result.predicted, strict=True)
    ]
    write_csv(out.confusion_csv, ["actual", "predicted"], names)
    with atomic_path(out.confusion_png) as tmp:
        confusion_figure(result.confusion).savefig(tmp, format="png")
    test_input = split_input(data_dir, "test", trained[records.DATA_TAG], len(y_test))
    track_evaluation(tracking_uri, trained["run_id"], result, out.confusion_png, test_input)
    return result.headline


def track_evaluation(
    tracking_uri: str,
    run_id: str,
    result: Evaluation,
    confusion_png: Path,
    test_input: DatasetInput,
) -> None:
    """The evaluation added to the training's run without reopening it (the run stays
    FINISHED whatever happens here; an interrupted evaluate cannot end it FAILED or leave it
    RUNNING), with the training curves drawn from the run's per-epoch metrics."""
    history = tracking.metric_history(tracking_uri, run_id, CURVES)
    confusion = PurePosixPath(layout.CONFUSION_ARTIFACT)
    curves = PurePosixPath(layout.CURVES_ARTIFACT)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(confusion_png, Path(tmp, confusion.name))
        curves_figure(history).savefig(Path(tmp, curves.name), format="png")
        tracking.log_to_run(
            tracking_uri,
            run_id,
            metrics={**result.headline, **flat_class_metrics(result.per_class)},
            dicts={layout.CLASSES_ARTIFACT: result.per_class},
            files=[(Path(tmp, a.name), str(a.parent)) for a in (confusion, curves)],
        )
    log_datasets(tracking_uri, run_id, [test_input])


def curves_figure(history: Mapping[str, Sequence[float]]) -> Any:
    """Loss and accuracy per epoch (train and val, as logged) side by side (matplotlib)."""
    from matplotlib.figure import Figure  # no pyplot: nothing kept once the figure is saved

    fig = Figure(figsize=(8, 3.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "val")):
            values = history.get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves")
    fig.tight_layout()
    return fig
