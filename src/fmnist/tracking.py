"""Everything that talks to MLflow tracking: runs, params, metrics, artifacts, models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
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
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a child run under a parent
SWEEP_ARTIFACT = "sweep/comparison.json"
PARENT_ENV = "FMNIST_PARENT_RUN_ID"  # set by a sweep: the stages' runs become its children


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
    db = sqlite_path(uri)
    if db is None:
        return None  # a tracking server decides where artifacts live
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / "mlruns" / safe).as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


_ready: set[str] = set()


def open_store(uri: str) -> None:
    """Point MLflow at uri; a new sqlite store is created by one process at a time.

    MLflow creates (and migrates) a sqlite store on first use; two processes doing that at
    once crash (`duplicate column name`). An exclusive lock on `<db>.lock` beside the file
    makes every other process wait until the tables exist; the lock file then records the
    database's inode, so later processes skip the (second-long) creation check.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    db = sqlite_path(uri)
    if db is None or uri in _ready:
        return
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if _lock_mark(db) != _created_mark(db):
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates the tracking tables
            client.search_registered_models(max_results=1)  # ... and the registry's
            lock.truncate(0)
            lock.write(_created_mark(db))
    _ready.add(uri)


@contextlib.contextmanager
def store_created_alongside(uri: str) -> Iterator[None]:
    """Create a new sqlite store in a second process while the block runs (TensorFlow's
    import, in train): the two seconds of MLflow's table creation then cost no wall time on
    a second core. open_store's lock serializes it with everything else; the block's own
    open_store waits for it. On exit the helper is waited for, never killed (a store cut off
    mid-creation would be half-migrated). No-op for servers and stores that exist."""
    db = sqlite_path(uri)
    if db is None or uri in _ready or _lock_mark(db) == _created_mark(db):
        yield
        return
    import subprocess
    import sys

    helper = subprocess.Popen(
        [sys.executable, "-c", "import sys, fmnist.tracking as t; t.open_store(sys.argv[1])", uri],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # on failure the block's own open_store reports it
    )
    try:
        yield
    finally:
        helper.wait()


def _lock_mark(db: Path) -> str | None:
    """What `<db>.lock` records: the created mark of the database it last saw created."""
    try:
        return Path(f"{db}.lock").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _created_mark(db: Path) -> str:
    """Names this database file (a deleted and re-created one gets a new inode)."""
    try:
        return f"created {db.stat().st_ino}"
    except FileNotFoundError:
        return "absent"


def store_error_line(exc: BaseException) -> str | None:
    """One line for a sqlite store that refused a write because another process held it."""
    if "database is locked" not in f"{type(exc).__name__}: {exc}":
        return None
    return (
        "the sqlite MLflow store is locked by another writer (sqlite takes one at a time); "
        "for concurrent runs use a tracking server: `make up`, then "
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000"
    )


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
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Open (or resume) a run, nested under parent_run_id if given; it ends FINISHED, or
    FAILED/KILLED if the block raises."""
    import mlflow
    from mlflow.exceptions import MlflowException

    tags = {**(tags or {}), **({PARENT_TAG: parent_run_id} if parent_run_id else {})}
    try:
        open_store(uri)
        experiment_id = None if run_id else _experiment_id(uri, experiment)
        run = mlflow.start_run(
            run_id=run_id, run_name=run_name, tags=tags, experiment_id=experiment_id
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


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


@contextlib.contextmanager
def sweep_run(uri: str, experiment: str, name: str, plan: Sequence[Any]) -> Iterator[str]:
    """The sweep's parent run (its trainings' runs nest under it); ends FAILED if it raises."""
    with tracked_run(uri, experiment, run_name=name, tags={"fmnist.sweep": name}) as run_id:
        log_params(
            {
                "sweep.trainings": ",".join(p.training.name for p in plan),
                "sweep.size": str(len(plan)),
            }
        )
        yield run_id


def run_metrics(uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each metric a run logged."""
    return dict(_run_data(uri, run_id).metrics)


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
    return dict(_run_data(uri, run_id).params)


def _run_data(uri: str, run_id: str) -> Any:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    open_store(uri)
    try:
        return MlflowClient(uri).get_run(run_id).data
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {uri}: run {run_id}: {first_line(exc)}") from None
