"""The MLflow pyfunc of every registered version: raw pixels in, class probabilities out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from .images import CLASS_NAMES, check_pixels, model_features, prediction_table
from .unicode_names import load_keras_model

KERAS_ARTIFACT = "keras_model"  # the .keras file, an artifact of the logged model
CHUNK = 1024  # images per prediction call: (1024, 784) float32 is 3.2 MB


def predict_table(model: Any, model_input: Any) -> Any:
    """Raw pixels through a Keras model: validate, scale, predict -> a DataFrame of classes (a
    bad input: MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers 400)."""
    try:
        images = check_pixels(model_input)
    except ValueError as exc:
        raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
    x = model_features(images, len(model.input_shape))
    # predict_on_batch by chunks: Keras' predict() sets up a data pipeline on every call (40 ms,
    # a hundred times one image's prediction); the compiled function and numbers are the same.
    chunks = [model.predict_on_batch(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]
    probabilities = np.concatenate(chunks) if chunks else np.zeros((0, len(CLASS_NAMES)))
    return pd.DataFrame(prediction_table(probabilities))  # (n, 10) -> class, label, columns


class FashionMnistClassifier(PythonModel):
    """Loads the Keras file in load_context; predict takes (n, 784) or (n, 28, 28) pixels."""

    def load_context(self, context: Any) -> None:
        self.model = load_keras_model(context.artifacts[KERAS_ARTIFACT])

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """(n, 784) or (n, 28, 28) raw pixels (an array, or a DataFrame of 784 columns)."""
        # np.ndarray: a hint MLflow infers no schema from; the model checks its input itself
        return predict_table(self.model, model_input)
