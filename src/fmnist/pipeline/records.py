"""The record files the stages leave in git: train's (models/trained.json: its MLflow run
and logged model) and register's (models/registered.json: the registry version)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import read_json

DATA_TAG = "fmnist.data.prepared"  # DVC's hash of data/prepared, as dvc.lock records it
COMMIT_TAG = "fmnist.git.commit"
MODEL_NAME_TAG = "fmnist.model.name"
VERSION_DATA_TAG = "data.prepared"  # the same hash on the registered version (register)
TRAINED_KEYS = ("run_id", "model_uri", "optimizer", DATA_TAG, COMMIT_TAG, MODEL_NAME_TAG)


def read_trained(path: Path) -> dict[str, Any]:
    """models/trained.json as train writes it, every key present."""
    record = read_json(path)
    missing = [k for k in TRAINED_KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        raise DataIntegrityError(f"{path}: missing {', '.join(missing)} (re-run `dvc repro train`)")
    return dict(record)
