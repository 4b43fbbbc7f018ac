"""Logging the served model self-contained, so MLflow's own tools run it anywhere: models-from-
code (`fmnist_model/model_code.py`) with the `fmnist_model` package as its code, the Keras file
as its artifact, pinned requirements (nothing of fmnist) and an output signature."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.process.errors import TrackingError

if TYPE_CHECKING:
    import keras
    import numpy as np


def log_served_model(
    model: keras.Model, keras_file: Path, sample_pixels: np.ndarray
) -> tuple[str, str]:
    """Log the model as the module says, in the active run; return (model_uri, model_id)."""
    import warnings

    from fmnist.process.imports import long_lived

    with long_lived():
        import mlflow.pyfunc
        from mlflow.models import infer_signature

    import fmnist_model
    from fmnist_model.pyfunc import KERAS_ARTIFACT, predict_table

    package = Path(fmnist_model.__file__).parent
    # The output schema from the served code path run on the model in memory. No input
    # schema: MLflow's TensorSpec fixes the rank, so one signature cannot take both
    # (n, 784) and (n, 28, 28); the model checks its input itself (served_model_metadata).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        signature = infer_signature(None, predict_table(model, sample_pixels))
    with _uv_project_detection_off():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package / "model_code.py"),
            code_paths=[str(package)],
            artifacts={KERAS_ARTIFACT: str(keras_file)},
            signature=signature,
            input_example=sample_pixels[:2],  # (2, 28, 28) uint8: the form users hold
            metadata=served_model_metadata(keras_file.name),
            # Given, not inferred: inference reloads the model in a subprocess (seconds).
            pip_requirements=served_requirements(),
        )
    return info.model_uri, info.model_id


def served_model_metadata(keras_name: str) -> dict[str, Any]:
    """What a logged model says of itself (MLmodel `metadata`, shown in the MLflow UI)."""
    from fmnist_model.images import INPUT_FORMS

    return {
        "input_forms": list(INPUT_FORMS),
        "input_check": "no input schema (a TensorSpec fixes the rank, so it could hold only "
        "one of the two forms); the model itself refuses anything but numbers 0-255 in one "
        "of the forms, with one line (HTTP 400 from the scoring server)",
        "scaling": "x / 255 inside the model (fmnist_model.images.scale_images, as training)",
        "output": "class_id, label, and one probability column per class",
        "code": "code/fmnist_model: the pyfunc, imports nothing of fmnist",
        "keras_file": f"artifacts/{keras_name}: keras.models.load_model(path, compile=False) "
        "loads it with Keras 3 alone; to predict on Keras' TensorFlow backend first call "
        "allow_unicode_names() from code/fmnist_model/unicode_names.py (TensorFlow refuses "
        "the Unicode model name as a scope name; the JAX backend needs nothing); "
        "mlflow.pyfunc.load_model does all of it",
    }


TENSORFLOW_BUILDS = {  # what pyproject.toml installs where
    "tensorflow-cpu": "sys_platform == 'linux' and platform_machine == 'x86_64'",
    "tensorflow": "sys_platform != 'linux' or platform_machine != 'x86_64'",
}
SERVED_DISTRIBUTIONS = ("keras", "numpy", "pandas", "mlflow")  # what fmnist_model imports


def served_requirements() -> list[str]:
    """The served model's pip requirements: this environment's versions, pinned."""
    found = {}
    for dist in (*TENSORFLOW_BUILDS, *SERVED_DISTRIBUTIONS):
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    tf_version = next((found[d] for d in TENSORFLOW_BUILDS if d in found), None)
    missing = [d for d in SERVED_DISTRIBUTIONS if d not in found]
    missing += [] if tf_version else ["tensorflow"]
    if missing:
        raise TrackingError(f"cannot pin the served model's requirements: {', '.join(missing)}")
    return [f"{d}=={tf_version}; {marker}" for d, marker in TENSORFLOW_BUILDS.items()] + [
        f"{d}=={found[d]}" for d in SERVED_DISTRIBUTIONS
    ]


@contextlib.contextmanager
def _uv_project_detection_off() -> Iterator[None]:
    """MLflow copies a uv project's uv.lock and pyproject.toml into every model it logs, and
    `--env-manager uv` then builds fmnist itself from them; the model states its own
    requirements instead (MLflow's switch: MLFLOW_UV_AUTO_DETECT=false)."""
    before = os.environ.get(UV_DETECT_ENV)
    os.environ[UV_DETECT_ENV] = "false"
    try:
        yield
    finally:
        os.environ.pop(UV_DETECT_ENV, None)
        if before is not None:
            os.environ[UV_DETECT_ENV] = before


UV_DETECT_ENV = "MLFLOW_UV_AUTO_DETECT"
