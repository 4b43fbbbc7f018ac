"""Tracking against real sqlite stores: concurrent first use, nested runs, locked stores."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.tracking.mlflow_store import open_store, workspace_root
from fmnist.tracking.runs import (
    KIND_TAG,
    MODEL_DEVELOPMENT,
    PARENT_TAG,
    ensure_experiment,
    log_epoch,
    metric_history,
    tracked_run,
)
from tests.conftest import REPO


def _first_use(uri: str, experiment: str) -> str:
    with tracked_run(uri, experiment, run_name="concurrent") as run_id:
        return run_id


@pytest.mark.slow  # processes racing, seconds of waiting
def test_four_processes_creating_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Unlocked, MLflow's table creation races ("duplicate column name") in all but one."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        run_ids = pool.starmap(_first_use, [(uri, "fashion-mnist")] * 4)
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("fashion-mnist").experiment_id]
    )
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_run_nests_under_its_parent(tracking_uri: str) -> None:
    with tracked_run(tracking_uri, "sweeps", run_name="sweep") as parent:
        pass
    with tracked_run(tracking_uri, "sweeps", run_name="child", parent_run_id=parent) as child:
        pass
    assert MlflowClient(tracking_uri).get_run(child).data.tags[PARENT_TAG] == parent


def test_a_signal_a_library_lost_inside_the_run_ends_it_killed(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist.process.failures import Interrupted, signals_unwind
    from tests.process.test_failures import _LosesASignal

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)  # Python's "ignored"

    with pytest.raises(Interrupted), signals_unwind(), tracked_run(tracking_uri, "lost") as run_id:
        _LosesASignal()  # a real SIGTERM whose raise Python drops in a finalizer
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "KILLED"


@pytest.mark.slow  # processes racing, seconds of waiting
def test_a_cli_command_on_a_store_another_process_holds_is_one_line(
    tmp_path: Path, tracking_uri: str
) -> None:
    open_store(tracking_uri)  # the tables exist; now another writer holds the database
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "fmnist.cli", "models", "--tracking-uri", tracking_uri,
             "--params", str(REPO / "params.yaml")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    store = f"the sqlite MLflow store {tmp_path / 'mlflow.db'} is locked by another writer"
    assert lines[0].startswith(f"fmnist models: error: {store}")
    assert "use a tracking server" in lines[0]


def test_workspace_root_sees_through_dvc_temp_experiments(tmp_path: Path) -> None:
    temp = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12"
    temp.mkdir(parents=True)
    assert workspace_root(temp) == tmp_path.resolve()
    assert workspace_root(tmp_path) == tmp_path.resolve()


def test_every_experiment_fmnist_uses_is_a_model_development_one(tracking_uri: str) -> None:
    """New ones are created with the kind, existing ones without it get it; a kind someone
    chose is kept."""
    open_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    old = client.create_experiment("made-elsewhere")
    chosen = client.create_experiment("chosen", tags={KIND_TAG: "genai_development"})
    new = ensure_experiment(tracking_uri, "fashion-mnist")
    with tracked_run(tracking_uri, "made-elsewhere"):
        pass
    assert ensure_experiment(tracking_uri, "chosen") == chosen
    kinds = {e: client.get_experiment(e).tags.get(KIND_TAG) for e in (new, old, chosen)}
    assert kinds == {new: MODEL_DEVELOPMENT, old: MODEL_DEVELOPMENT, chosen: "genai_development"}
    assert MODEL_DEVELOPMENT == "custom_model_development"
    assert ensure_experiment(tracking_uri, "fashion-mnist") == new


def test_metric_history_is_in_step_order(tracking_uri: str) -> None:
    with tracked_run(tracking_uri, "history") as run_id:
        for epoch, loss in ((2, 0.5), (1, 0.9), (3, 0.4)):
            log_epoch(epoch, {"loss": loss})
    found = metric_history(tracking_uri, run_id, ["loss", "val_loss"])
    assert found == {"loss": [0.9, 0.5, 0.4]}  # a metric never logged is left out
