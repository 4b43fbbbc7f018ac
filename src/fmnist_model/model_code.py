"""MLflow models-from-code entry of every registered version: MLflow runs this file (copied
into the model) when it loads the model; `fmnist_model` comes from the model's own code/."""

import mlflow

from fmnist_model.pyfunc import FashionMnistClassifier

mlflow.models.set_model(FashionMnistClassifier())
