"""The sweep without Prefect (what `fmnist sweep` runs), on the real data in a temporary repo:
one training diverges, the sweep reports it and registers the best of the rest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.config import load_params
from fmnist.overrides import RunOverrides
from fmnist.stages import plan_sweep, run_sweep
from tests.integration.conftest import runner_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_diverging_training_fails_only_its_child_run(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in runner_env(repo).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo)
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    adam, sgd = plan_sweep(repo, "nan", ["adam", "sgd"], ["relu"], RunOverrides(epochs=1))
    # A learning rate no validation refuses, but that sends the loss to NaN at once.
    diverging = dataclasses.replace(
        sgd, set_params=[*sgd.set_params, "-S", "train.learning_rate=1e30"]
    )
    lines: list[str] = []
    result = run_sweep(
        load_params(repo / "params.yaml"), repo, "nan", [adam, diverging], 2, uri, lines.append
    )

    assert [(r["training"], r["status"][:7]) for r in result.rows] == [
        ("adam-relu", "best"),
        ("sgd-relu", "failed:"),
    ]
    assert "training diverged: loss nan at epoch 1" in result.rows[1]["status"]
    assert any(line.startswith("[sgd-relu] failed: ") for line in lines)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fashion-mnist").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`fmnist.sweep` = 'nan'")
    children = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    status = {c.info.run_name: c.info.status for c in children}
    assert status == {"adam-relu-1ep": "FINISHED", "sgd-relu-1ep": "FAILED"}
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["failed"] == 1

    registered = result.registered
    assert registered["version"] == 1 and registered["promoted"]
    adam_run = next(c for c in children if c.info.run_name == "adam-relu-1ep")
    assert registered["run_id"] == adam_run.info.run_id
    assert client.get_model_version_by_alias("fashion-mnist", "champion").run_id == (
        adam_run.info.run_id
    )
    # The data was prepared once, in the workspace; no training prepared it again.
    assert not [ln for ln in lines if ln.startswith("[") and "Running stage 'prepare'" in ln]
    assert any("prepare" in line for line in lines if line.startswith("[adam-relu] "))
