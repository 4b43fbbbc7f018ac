"""Datasets a run used, as MLflow records them (the UI's "Datasets used"): a name, where the
data is, DVC's hash of it as the digest, what the run used it for, and its rows.

Built from MLflow's public entities (Dataset, DatasetInput, InputTag) and logged through
MlflowClient.log_inputs, so a run that has ended gets them without being reopened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist.process.errors import TrackingError, first_line
from fmnist.process.imports import load_mlflow
from fmnist.tracking.mlflow_store import open_store
from fmnist.tracking.store import redact

if TYPE_CHECKING:
    import mlflow.entities

NAME_PREFIX = "fashion-mnist-"  # fashion-mnist-train, fashion-mnist-val, fashion-mnist-test
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> context


def file_digest(path: Path) -> str:
    """DVC's hash of one file: the md5 of its bytes (32 hex digits)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def dataset_input(
    name: str, source: str, digest: str, context: str, rows: int
) -> mlflow.entities.DatasetInput:
    """A dataset as a run's input: source is a path or URL (the UI shows it), context what
    the run used it for (`training`, `validation`, `testing`, ...), rows its profile."""
    load_mlflow()  # the first import of the process is a long-lived one
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source_type, key = _source_kind(source)
    dataset = Dataset(
        name=name,
        digest=digest,
        source_type=source_type,
        source=json.dumps({key: source}),
        profile=json.dumps({"num_rows": rows}),
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def _source_kind(source: str) -> tuple[str, str]:
    """MLflow's source type for source and the JSON key its UI reads the location from."""
    if source.startswith(("http://", "https://")):
        return "http", "url"
    if source.startswith("s3://"):
        return "s3", "uri"
    return "local", "uri"


def log_datasets(
    tracking_uri: str, run_id: str, inputs: Sequence[mlflow.entities.DatasetInput]
) -> None:
    """Record inputs as datasets run_id used, whether the run is active or has ended (its
    status stays what it was)."""
    load_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    open_store(tracking_uri)  # a tracking server must answer within the deadline
    try:
        MlflowClient(tracking_uri).log_inputs(run_id, datasets=list(inputs))
    except MlflowException as exc:
        where = f"MLflow at {redact(tracking_uri)}: run {run_id}"
        raise TrackingError(f"{where}: logging datasets: {first_line(exc)}") from None


def split_input(
    data_dir: Path, split: str, data_version: str, rows: int
) -> mlflow.entities.DatasetInput:
    """A prepared split (`<data_dir>/<split>.npz`) as a run's input: named fashion-mnist-<split>,
    its source the file's DVC path `@` DVC's hash of the folder (dvc.lock's `md5`), its
    digest DVC's hash of the file (the name of its copy in the DVC cache)."""
    path = data_dir / f"{split}.npz"
    source = f"{_dvc_path(path)}@{data_version}"
    return dataset_input(NAME_PREFIX + split, source, file_digest(path), CONTEXTS[split], rows)


def _dvc_path(path: Path) -> str:
    """path as dvc.yaml names it: relative to the folder the stage runs in (the repo, or
    DVC's copy of it for an experiment), when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
