"""The evaluate stage's faults leave the training's run as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.config import Params
from fmnist.errors import DataIntegrityError
from fmnist.stages import evaluate as evaluate_stage
from fmnist.stages import train as train_stage
from tests.stages.outputs import evaluate_outputs, train_outputs

pytestmark = pytest.mark.slow


def test_evaluate_of_a_missing_model_leaves_the_run_alone(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    out = train_outputs(tmp_path)
    train_stage.run(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    out.model.unlink()
    with pytest.raises(DataIntegrityError, match="model.keras: missing"):
        evaluate_stage.run(
            tiny_params,
            out.model,
            prepared_dir,
            out.trained,
            evaluate_outputs(tmp_path),
            tracking_uri,
        )
    run_id = json.loads(out.trained.read_text())["run_id"]
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"
