"""Everything that talks to MLflow tracking: runs, params, metrics, artifacts, models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.errors import TrackingError, first_line

if TYPE_CHECKING:
    import keras
    import numpy as np

    from fmnist.config import Params

DEFAULT_DB = "mlflow.db"
SUMMARY_ARTIFACT = "model_summary.txt"
MODEL_ARTIFACT = "model"


def workspace_root(cwd: Path) -> Path:
    """The repo a stage runs for: cwd itself, or the repo of a DVC temp experiment workspace.

    `dvc exp run --temp` (and `dvc queue`) run stages in `<repo>/.dvc/tmp/exps/.../tmpXXXX`,
    a folder DVC deletes afterwards; tracking must land in the repo's own store.
    """
    parts = cwd.resolve().parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd.resolve()


def default_tracking_uri(root: Path) -> str:
    """MLflow's own default, `sqlite:///mlflow.db`, made absolute at the repo root."""
    return f"sqlite:///{(root / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(given: str | None, cwd: Path) -> str:
    """The given URI (flag or MLFLOW_TRACKING_URI), else the repo's own sqlite store."""
    return given or default_tracking_uri(workspace_root(cwd))


def _local_artifact_root(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts go beside the database (not under whatever cwd is)."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts live
    db = Path(uri.removeprefix("sqlite:///"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / "mlruns" / safe).as_uri()


def _experiment_id(uri: str, experiment: str) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return str(found.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.create_experiment(experiment, _local_artifact_root(uri, experiment)))
    except MlflowException:  # created meanwhile by a concurrent run
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise
        return str(found.experiment_id)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'train': {'epochs': 5}} -> {'train.epochs': 5}; lists get their index as a key."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def params_for_tracking(params: Params) -> dict[str, str]:
    """Every param that shapes a model, flat, as MLflow stores them (strings)."""
    dumped = params.model_dump(mode="json", by_alias=True, exclude={"download"})
    return {k: str(v) for k, v in flatten(dumped).items()}


@contextlib.contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    *,
    run_id: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Open (or resume) a run; it ends FINISHED, or FAILED/KILLED if the block raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = None if run_id else _experiment_id(uri, experiment)
        run = mlflow.start_run(
            run_id=run_id, run_name=run_name, tags=dict(tags or {}), experiment_id=experiment_id
        )
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {uri}: {first_line(exc)}") from None
    with run:
        yield run.info.run_id


def log_params(params: Mapping[str, str]) -> None:
    import mlflow

    mlflow.log_params(dict(params))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Keras epoch-end hook: the epoch's metrics at step = epoch (1-based, as Keras prints)."""
    log_metrics(logs, step=epoch)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(dict(data), artifact_file)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def log_served_model(
    model: keras.Model, keras_file: Path, sample_pixels: np.ndarray
) -> tuple[str, str]:
    """Log the model the MLflow 3 way: the pyfunc that serves it (raw pixels in, scaling
    inside), with the Keras file as its artifact and a signature; return (model_uri, model_id).
    """
    import keras as _keras
    import mlflow.pyfunc
    import numpy  # at run time; `np` above is for the annotations
    from mlflow.models import infer_signature

    from fmnist.serving import INPUT_DOC, FashionMnistClassifier, predict_table

    # No input_example: with MLflow 3.17 and Keras 3.15 it fails (input_example.json not
    # found). The signature comes from a real batch of raw pixels and the real output of the
    # served code path, run on the model in memory.
    pixels = sample_pixels.reshape(len(sample_pixels), -1).astype(numpy.float64)
    signature = infer_signature(pixels, predict_table(model, pixels))
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=FashionMnistClassifier(),  # holds no model: it loads the artifact
        artifacts={"keras_model": str(keras_file)},
        signature=signature,
        metadata={"input": INPUT_DOC, "scaling": "x / 255 inside the model (scale_images)"},
        # Given, not inferred: inference reloads the model in a subprocess (seconds).
        pip_requirements=_requirements(_keras.__version__),
    )
    return info.model_uri, info.model_id


def _requirements(keras_version: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = [f"keras=={keras_version}"]
    for dist in ("tensorflow-cpu", "tensorflow", "numpy", "pandas", "scikit-learn", "mlflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return reqs


def run_params(uri: str, run_id: str) -> dict[str, str]:
    """The params a run logged."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return dict(MlflowClient(uri).get_run(run_id).data.params)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {uri}: run {run_id}: {first_line(exc)}") from None
