"""The evaluate stage: the trained model on the test split, once: test metrics, per-class
report and confusion matrix, to files and to the training's MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist import tracking
from fmnist.config import Params
from fmnist.errors import DataIntegrityError
from fmnist.files import atomic_path, write_csv, write_json
from fmnist.records import read_trained
from fmnist.stages.splits import load_split
from fmnist_model.images import CLASS_NAMES, model_features


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: Path  # metrics/evaluate.json: test_loss, test_accuracy (DVC metrics)
    classes: Path  # metrics/classes.json: per-class precision, recall, f1 (DVC metrics)
    confusion_csv: Path  # plots/confusion.csv: actual,predicted per test image (DVC plot)
    confusion_png: Path  # plots/confusion.png


def load_model(path: Path) -> Any:
    """The saved .keras file, loaded as every registered version loads it to serve (the
    same function, backend and options), so the test metrics are the served model's."""
    from fmnist.keras_compat import load_keras
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
    """Test metrics, per-class report and confusion matrix; returns test_loss, test_accuracy."""
    from fmnist.core.metrics import confusion_figure, evaluate_predictions, flat_class_metrics

    x_test, y_test = load_split(data_dir / "test.npz")  # (n, 28, 28) uint8 pixels, (n,) uint8
    run_id = read_trained(trained_path)["run_id"]
    model = load_model(model_path)
    x = model_features(x_test, len(model.input_shape))  # x / 255 in the model's input form
    proba = model.predict(x, batch_size=params.evaluate.batch_size, verbose=0)  # (n, 10)
    result = evaluate_predictions(y_test, proba)
    headline = {"test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
    write_json(out.metrics, headline)
    write_json(out.classes, result.per_class)
    names = [
        [CLASS_NAMES[a], CLASS_NAMES[p]] for a, p in zip(y_test, result.predicted, strict=True)
    ]
    write_csv(out.confusion_csv, ["actual", "predicted"], names)
    figure = confusion_figure(result.confusion)
    with atomic_path(out.confusion_png) as tmp:
        figure.savefig(tmp, format="png")
    # Added to the training's run without reopening it: the run stays FINISHED whatever
    # happens here (an interrupted evaluate cannot end it FAILED or leave it RUNNING).
    tracking.log_to_run(
        tracking_uri,
        run_id,
        metrics={**headline, **flat_class_metrics(result.per_class)},
        dicts={"evaluation/classes.json": result.per_class},
        files=[(out.confusion_png, "evaluation")],
    )
    return headline
