"""The served model: raw pixels (0-255, as in the IDX files) in, class probabilities out.

Scaling happens inside, with the very function the prepare stage trains on
(`scale_images`), so serving and training cannot disagree. `FashionMnistClassifier` is the
MLflow pyfunc the train stage logs and the registry versions; `mlflow models serve` and
`fmnist serve` / `fmnist predict` all go through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

from fmnist.data.prepare import scale_images
from fmnist.evaluate import CLASS_NAMES

PIXELS = 28 * 28
INPUT_DOC = "raw pixels 0-255, 784 per image (28x28 row-major, as in the IDX files)"


def check_pixels(values: Any) -> np.ndarray:
    """Validated raw images: (n, 784) or (n, 28, 28) numbers in [0, 255] -> (n, 28, 28) uint8."""
    try:
        x = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pixels must be an array of numbers ({exc})") from None
    if x.dtype.kind not in "iuf":
        raise ValueError(f"pixels must be numbers 0-255, got {x.dtype} values")
    if x.ndim == 1 and x.size == PIXELS:
        x = x[None, :]
    if not (x.ndim == 2 and x.shape[1] == PIXELS) and x.shape[1:] != (28, 28):
        raise ValueError(f"each image must have 784 pixels or be 28x28, got shape {x.shape}")
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 255):
        raise ValueError("pixel values must lie in 0-255 (raw, unscaled)")
    if x.dtype.kind == "f" and x.size and not np.array_equal(x, np.rint(x)):
        raise ValueError("pixel values must be whole numbers 0-255 (raw, unscaled)")
    return x.reshape(-1, 28, 28).astype(np.uint8)


def prediction_table(probabilities: np.ndarray) -> dict[str, list[Any]]:
    """(n, 10) probabilities -> columns: class id, class name, one probability per class."""
    ids = probabilities.argmax(axis=1)
    table: dict[str, list[Any]] = {
        "class_id": [int(i) for i in ids],
        "label": [CLASS_NAMES[i] for i in ids],
    }
    for k, name in enumerate(CLASS_NAMES):
        table[name] = [float(p) for p in probabilities[:, k]]
    return table


def model_features(images: np.ndarray, input_rank: int) -> np.ndarray:
    """Scaled features in the model's own input form: flat (n, 784) or image (n, 28, 28)."""
    x = scale_images(images)  # (n, 28, 28) float32 in [0, 1]
    return x.reshape(len(x), PIXELS) if input_rank == 2 else x


def predict_table(model: Any, model_input: Any) -> Any:
    """Raw pixels through a Keras model: validate, scale, predict -> a DataFrame of classes.

    A bad input is an MlflowException(INVALID_PARAMETER_VALUE): the scoring server answers
    400 with its one line.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    try:
        images = check_pixels(model_input)
    except ValueError as exc:
        raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
    x = model_features(images, len(model.input_shape))
    probabilities = model.predict(x, verbose=0, batch_size=1024)
    return pd.DataFrame(prediction_table(probabilities))


class FashionMnistClassifier(PythonModel):
    """MLflow pyfunc around the Keras file (an artifact, loaded in load_context)."""

    def load_context(self, context: Any) -> None:
        from fmnist.keras_compat import load_keras

        keras = load_keras()
        self.model = keras.models.load_model(context.artifacts["keras_model"], compile=False)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return predict_table(self.model, model_input)
