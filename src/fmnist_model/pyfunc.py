"""The MLflow pyfunc of every registered version: raw pixels in, class probabilities out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from .images import check_pixels, model_features, prediction_table
from .keras_file import load_keras_model

KERAS_ARTIFACT = "keras_model"  # the .keras file, an artifact of the logged model


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
    """Loads the Keras file in load_context; predict takes (n, 784) or (n, 28, 28) pixels."""

    def load_context(self, context: Any) -> None:
        self.model = load_keras_model(context.artifacts[KERAS_ARTIFACT])

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """(n, 784) or (n, 28, 28) raw pixels (an array, or a DataFrame of 784 columns)."""
        # np.ndarray is a hint MLflow infers no schema from: the model checks its input itself.
        return predict_table(self.model, model_input)
