"""MLflow runs: experiments, runs owned by this process, params, metrics and the datasets a
run used (callers log the rest through `load_mlflow()` into the active run)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.process.failures import raise_lost_signal
from fmnist.process.files import file_digest
from fmnist.process.imports import load_mlflow as load_mlflow
from fmnist.tracking.lifecycle import OWNER_TAG, owner
from fmnist.tracking.mlflow_store import mlflow_errors, redact, sqlite_path, store_client

if TYPE_CHECKING:
    import mlflow.entities

    from fmnist.params.config import Params

SUMMARY_ARTIFACT = "model_summary.txt"
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a child run under a parent
PARENT_ENV = "FMNIST_PARENT_RUN_ID"  # set by tuning's write-back: the stages' runs nest under it
KIND_TAG = "mlflow.experimentKind"  # an experiment's kind, as MLflow 3 records it
MODEL_DEVELOPMENT = "custom_model_development"  # the kind of an experiment of training runs
DATASET_PREFIX = "fashion-mnist-"  # fashion-mnist-train, fashion-mnist-val, fashion-mnist-test
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> context


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment name, created if new; tagged custom model development, the kind
    MLflow 3's UI opens on its runs, not the GenAI overview."""
    with store_client(uri) as client:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            if KIND_TAG not in found.tags:
                client.set_experiment_tag(found.experiment_id, KIND_TAG, MODEL_DEVELOPMENT)
            return str(found.experiment_id)
        # A sqlite store's artifacts go beside it, not under whatever cwd is (a server decides)
        db, safe = sqlite_path(uri), "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        root = None if db is None else (db.parent / "mlruns" / safe).as_uri()
        try:
            return str(client.create_experiment(name, root, tags={KIND_TAG: MODEL_DEVELOPMENT}))
        except MlflowException:  # created meanwhile by a concurrent run (which tagged it)
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'train': {'epochs': 5}} -> {'train.epochs': 5}; lists get their index as a key."""
    if not isinstance(value, Mapping | list | tuple):
        return {prefix: value}
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def params_for_tracking(params: Params) -> dict[str, str]:
    """Every param that shapes a model, flat, as MLflow stores them (strings)."""
    dumped = params.model_dump(
        mode="json", by_alias=True, exclude={"download", "score", "monitor", "search"}
    )
    return {k: str(v) for k, v in flatten(dumped).items()}


@contextlib.contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Start a run (nested under parent_run_id if given) owned by this process; it ends
    FINISHED, FAILED if the block raises, KILLED if it is interrupted (Ctrl-C, SIGTERM)."""
    tags = {**(tags or {}), OWNER_TAG: owner()}
    tags |= {PARENT_TAG: parent_run_id} if parent_run_id else {}
    experiment_id = ensure_experiment(uri, experiment)
    mlflow = load_mlflow()
    from mlflow.exceptions import MlflowException

    with mlflow_errors(f"MLflow at {redact(uri)}"):
        run = mlflow.start_run(run_name=run_name, tags=tags, experiment_id=experiment_id)
    try:
        yield run.info.run_id
        raise_lost_signal()  # a signal a library lost inside the block: the run ends KILLED
    except BaseException as exc:
        with contextlib.suppress(MlflowException):  # the error on its way is the one to say
            mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    with mlflow_errors(f"MLflow at {redact(uri)}: ending the run FINISHED"):
        mlflow.end_run("FINISHED")


def log_to_run(
    uri: str,
    run_id: str,
    metrics: Mapping[str, float],
    dicts: Mapping[str, Mapping[str, Any]],
    files: Sequence[tuple[Path, str]],
) -> None:
    """Add metrics, JSON and files to a run that has ended, without reopening it."""
    import time

    now = int(time.time() * 1000)
    with store_client(uri, run_id) as client:
        from mlflow.entities import Metric

        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for name, data in dicts.items():
            client.log_dict(run_id, dict(data), name)
        for path, artifact_dir in files:
            client.log_artifact(run_id, str(path), artifact_dir)


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Keras epoch-end hook: the epoch's metrics at step = epoch (1-based, as Keras prints)."""
    load_mlflow().log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)


def metric_history(uri: str, run_id: str, keys: Sequence[str]) -> dict[str, list[float]]:
    """Each key's values in step order (a training's: one per epoch), for the keys logged."""
    with store_client(uri, run_id) as client:
        found = {k: client.get_metric_history(run_id, k) for k in keys}
    return {k: [m.value for m in sorted(v, key=lambda m: m.step)] for k, v in found.items() if v}


def dataset_input(
    name: str, source: str, digest: str, context: str, rows: int
) -> mlflow.entities.DatasetInput:
    """A dataset as a run's input: source a path or URL, context `training`, `testing`, ..."""
    load_mlflow()  # the first import of the process is a long-lived one
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    web = source.startswith(("http://", "https://"))  # MLflow's UI reads a url, else a uri
    dataset = Dataset(
        name=name,
        digest=digest,
        source_type="http" if web else "s3" if source.startswith("s3://") else "local",
        source=json.dumps({"url" if web else "uri": source}),
        profile=json.dumps({"num_rows": rows}),
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def log_datasets(
    tracking_uri: str, run_id: str, inputs: Sequence[mlflow.entities.DatasetInput]
) -> None:
    """Record inputs as datasets run_id used, whether the run is active or has ended."""
    with store_client(tracking_uri, run_id, "logging datasets: ") as client:
        client.log_inputs(run_id, datasets=list(inputs))


def split_input(
    data_dir: Path, split: str, data_version: str, rows: int
) -> mlflow.entities.DatasetInput:
    """A prepared split as a run's input: its source the file's DVC path `@` the folder's DVC
    hash (dvc.lock's `md5`), its digest the file's DVC hash (its copy in the DVC cache)."""
    path = data_dir / f"{split}.npz"
    try:  # as dvc.yaml names it: relative to the folder the stage runs in
        dvc_path = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        dvc_path = path.as_posix()
    source = f"{dvc_path}@{data_version}"
    return dataset_input(DATASET_PREFIX + split, source, file_digest(path), CONTEXTS[split], rows)
