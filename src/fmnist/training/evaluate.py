"""The evaluate stage: the trained model's test metrics, per-class report and confusion matrix,
to files and to the training's MLflow run, with the training curves and the test dataset."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.process import layout
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import atomic_path, write_csv, write_json
from fmnist.tracking import runs as tracking
from fmnist.tracking.runs import log_datasets, split_input
from fmnist_model.images import CLASS_NAMES, model_features

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")  # the training's per-epoch metrics
_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] in its cross-entropy


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: Path  # metrics/evaluate.json: test_loss, test_accuracy (DVC metrics)
    classes: Path  # metrics/classes.json: per-class precision, recall, f1 (DVC metrics)
    confusion_csv: Path  # plots/confusion.csv: actual,predicted per test image (DVC plot)
    confusion_png: Path  # plots/confusion.png


@dataclass(frozen=True)
class Evaluation:
    test_loss: float
    test_accuracy: float
    per_class: dict[str, dict[str, float]]  # class name -> precision, recall, f1, support
    confusion: np.ndarray  # (10, 10) int, rows = actual, columns = predicted
    predicted: np.ndarray  # (n,) predicted class per test image

    @property
    def headline(self) -> dict[str, float]:
        return {"test_loss": self.test_loss, "test_accuracy": self.test_accuracy}


def load_model(path: Path) -> Any:
    """The .keras file, loaded as a registered version loads it to serve (the served metrics)."""
    from fmnist.process.imports import load_keras
    from fmnist_model.keras_file import load_keras_model

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


def evaluate_predictions(y_true: np.ndarray, proba: np.ndarray) -> Evaluation:
    """All test metrics from labels (n,) and class probabilities (n, 10), the loss as Keras'."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(CLASS_NAMES))
    predicted = proba.argmax(axis=1)
    picked = proba[np.arange(y_true.shape[0]), y_true.astype(np.intp)]  # the true class's
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for name, p, r, f, n in zip(CLASS_NAMES, precision, recall, f1, support, strict=True)
    }
    return Evaluation(
        test_loss=float(-np.mean(np.log(np.clip(picked, _EPSILON, 1 - _EPSILON)))),
        test_accuracy=float(accuracy_score(y_true, predicted)),
        per_class=per_class,
        confusion=confusion_matrix(y_true, predicted, labels=labels),
        predicted=predicted,
    )


def flat_class_metrics(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'test_precision_t-shirt_top': 0.8, ...} for trackers that take flat metric names."""
    return {
        f"test_{stat}_{name.lower().replace('/', '_').replace(' ', '_')}": float(values[stat])
        for name, values in per_class.items()
        for stat in ("precision", "recall", "f1")
    }


def confusion_figure(confusion: np.ndarray) -> Any:
    """A labelled confusion-matrix figure (matplotlib, no display needed)."""
    from matplotlib.figure import Figure  # not pyplot's: nothing kept once the figure is saved
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = Figure(figsize=(8, 7), dpi=100)
    ax = fig.subplots()
    ConfusionMatrixDisplay(confusion, display_labels=CLASS_NAMES).plot(
        ax=ax, cmap="Blues", xticks_rotation=45, colorbar=False, text_kw={"fontsize": 8}
    )
    ax.set(xlabel="predicted", ylabel="actual", title="Fashion-MNIST test set: confusion matrix")
    fig.tight_layout()
    return fig
