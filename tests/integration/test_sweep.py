"""The sweep without Prefect (what `fmnist sweep` runs), on the real data in a temporary repo:
one training diverges, the sweep reports it and registers the best of the rest; a training
DVC reused from an earlier run still shows under the sweep, linked to that run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.params.config import load_params
from fmnist.params.overrides import RunOverrides
from fmnist.tracking.runs import REUSED_TAG
from fmnist.tuning.sweep import plan as plan_sweep
from fmnist.tuning.sweep import run as run_sweep
from tests.integration.conftest import Runner, adopt_experiment, runner_env

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
    (parent,) = client.search_runs([experiment], "tags.`fmnist.tuning.sweep` = 'nan'")
    children = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    status = {c.info.run_name: c.info.status for c in children}
    assert status == {"adam-relu-1ep": "FINISHED", "sgd-relu-1ep": "FAILED"}
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["failed"] == 1
    adam_val = result.rows[0]["val_accuracy"]
    assert round(parent.data.metrics["best_val_accuracy"], 4) == adam_val  # what chose it
    assert round(parent.data.metrics["best_test_accuracy"], 4) == result.rows[0]["test_accuracy"]

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


def test_a_training_dvc_reused_is_a_child_run_linked_to_the_original(
    repo: Path, dvc: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same 1-cell sweep twice. DVC reuses a training when the experiment's baseline
    (dvc.lock) already records its data, code and params: here because the first sweep's
    training was adopted (`dvc exp apply` + commit). The train stage is never restored from
    DVC's run cache: DVC keeps none for a stage with a `cache: false` output (trained.json)."""
    for key, value in runner_env(repo).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo)
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    params = load_params(repo / "params.yaml")

    def sweep(name: str, lines: list[str]) -> dict[str, object]:
        plan = plan_sweep(repo, name, ["adam"], ["relu"], RunOverrides(epochs=1))
        (row,) = run_sweep(params, repo, name, plan, 1, uri, lines.append).rows
        return row

    first = sweep("first", [])
    assert first["status"] == "best"
    adopt_experiment(dvc, repo, "first-adam-relu")
    lines: list[str] = []
    second = sweep("second", lines)

    trained = first["run_id"]
    note = f"reused run {trained} (DVC restored its outputs: same data, code and params)"
    assert second["status"] == f"best, reused run {trained}"
    assert (second["run_id"], second["reused_from"]) == (trained, trained)
    assert {k: second[k] for k in ("val_accuracy", "test_accuracy")} == {
        k: first[k] for k in ("val_accuracy", "test_accuracy")
    }
    assert f"[adam-relu] {note}" in lines
    assert not [ln for ln in lines if "Running stage 'train'" in ln]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fashion-mnist").experiment_id
    parents = {
        r.data.tags["fmnist.tuning.sweep"]: r.info.run_id
        for r in client.search_runs([experiment], "tags.`fmnist.tuning.sweep` != ''")
    }
    (link,) = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parents['second']}'")
    assert (link.info.run_name, link.info.status) == ("adam-relu", "FINISHED")
    assert link.data.tags[REUSED_TAG] == trained
    assert link.data.tags["mlflow.note.content"] == note
    assert round(link.data.metrics["val_accuracy"], 4) == first["val_accuracy"]
    assert client.get_run(trained).data.tags["mlflow.parentRunId"] == parents["first"]
