"""fmnist: an MLOps workflow for Keras on Fashion-MNIST."""

import os

__version__ = "0.1.0"

# Nothing fmnist runs sends usage data anywhere: MLflow 3 otherwise starts a telemetry thread
# that posts to its vendor from every process that imports it. A user may set it to false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
