"""Datasets a run used (the UI's "Datasets used"), DVC's hash as the digest; logged through
MlflowClient.log_inputs, so a run that has ended gets them without being reopened."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist.process.files import file_digest as file_digest  # (importers keep this name)
from fmnist.process.imports import load_mlflow
from fmnist.tracking.mlflow_store import store_client

if TYPE_CHECKING:
    import mlflow.entities

NAME_PREFIX = "fashion-mnist-"  # fashion-mnist-train, fashion-mnist-val, fashion-mnist-test
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> context


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
    return dataset_input(NAME_PREFIX + split, source, file_digest(path), CONTEXTS[split], rows)
