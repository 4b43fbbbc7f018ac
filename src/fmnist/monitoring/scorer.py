"""The model a batch is scored with (a registered version, loaded by its number as `fmnist
serve` loads it) and what scoring it produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.pipeline import records
from fmnist_model.images import CLASS_NAMES


@dataclass(frozen=True)
class ScoringModel:
    name: str
    version: int
    run_id: str  # the training run the version came from
    data_version: str  # DVC's hash of the data/prepared it was trained on (version tag)
    model: Any  # mlflow.pyfunc.PyFuncModel

    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(n, 28, 28) uint8 -> (n, 10) probabilities, batch_size images per call."""
        parts = [
            self.model.predict(pixels[i : i + batch_size])[list(CLASS_NAMES)].to_numpy()
            for i in range(0, len(pixels), batch_size)
        ]
        return np.concatenate(parts).astype(np.float64)


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


def load_scoring_model(uri: str, name: str, version: int | None) -> ScoringModel:
    """Version `version` (None: the champion's), loaded by its number as `fmnist serve` does."""
    from fmnist.registry.versions import champion_version, client_for
    from fmnist.serving.loading import load_version
    from fmnist.tracking.mlflow_store import mlflow_errors

    number = champion_version(uri, name) if version is None else version
    with mlflow_errors(f"models:/{name}/{number}"):
        found = client_for(uri).get_model_version(name, str(number))
    model = load_version(uri, name, number).model
    data_version = str(found.tags.get(records.VERSION_DATA_TAG, ""))
    return ScoringModel(name, number, str(found.run_id), data_version, model)
