"""The version a batch is scored with (loaded by its number as `fmnist serve` loads it, with its
lineage) and what scoring it produced."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from fmnist.pipeline import records
from fmnist.serving.loading import ServedModel, load_version


@dataclass(frozen=True)
class Scored:
    run_id: str
    version: int
    rows: int
    counts: dict[str, int]
    mean_confidence: float
    predictions: Path
    input: str
    digest: str


def load_scoring_model(uri: str, name: str, version: int | None) -> ServedModel:
    """Version `version` (None: the champion's) with its training run and data version."""
    from fmnist.registry.versions import champion_version, client_for
    from fmnist.tracking.mlflow_store import mlflow_errors

    number = champion_version(uri, name) if version is None else version
    with mlflow_errors(f"models:/{name}/{number}"):  # the entry first: its error names the version
        found = client_for(uri).get_model_version(name, str(number))
    served = load_version(uri, name, number)
    data_version = str(found.tags.get(records.VERSION_DATA_TAG, ""))
    return replace(served, run_id=str(found.run_id), data_version=data_version)
