"""The register stage's faults: no version, no record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError, TrackingError
from fmnist.registry import register as register_stage

pytestmark = pytest.mark.slow


def test_register_with_an_unknown_model_creates_no_version(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    run = tmp_path / "trained.json"
    run.write_text(json.dumps({
        "run_id": "0" * 32, "model_uri": "models:/m-doesnotexist", "optimizer": "adam",
        "fmnist.data.prepared": "x.dir", "fmnist.git.commit": "abc", "fmnist.model.name": "m",
    }))  # fmt: skip
    metrics = tmp_path / "evaluate.json"
    metrics.write_text('{"test_loss": 0.4, "test_accuracy": 0.85}')
    summary = tmp_path / "summary.txt"
    summary.write_text("Model: m\n")
    with pytest.raises(TrackingError):
        register_stage.run(
            tiny_params, run, metrics, summary, tmp_path / "registered.json", tracking_uri
        )
    assert MlflowClient(tracking_uri).search_model_versions("name='fashion-mnist'") == []
    assert not (tmp_path / "registered.json").exists()


def test_incomplete_run_record_is_one_clear_error(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    run = tmp_path / "trained.json"
    run.write_text('{"run_id": "abc"}')
    with pytest.raises(DataIntegrityError, match="trained.json: missing model_uri, optimizer"):
        register_stage.run(
            tiny_params,
            run,
            tmp_path / "m.json",
            tmp_path / "s.txt",
            tmp_path / "r.json",
            tracking_uri,
        )
