"""One trial in this process (no Dask): on synthetic prepared splits, a sqlite study and a
sqlite MLflow store; a diverging trial is told FAIL and fails its own run only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fmnist.params.config import Params, parse_params
from fmnist.params.overrides import apply_dotted
from fmnist.tuning.space import Tuning

pytestmark = pytest.mark.slow  # Keras/TensorFlow

SPACE = {
    "layers": [1, 1], "units": [16, 16], "activations": ["relu"], "dropout": [0.0, 0.0],
    "batch_norm": [False], "optimizers": ["adam"], "learning_rate": [0.01, 0.01],
    "schedules": ["cosine"], "batch_sizes": [32], "epochs": [2, 2],
}  # fmt: skip


def _params(**space: Any) -> Params:
    raw = parse_params({}).model_dump(mode="json", by_alias=True)
    return parse_params(apply_dotted(raw, {"search.space": {**SPACE, **space}}))


def _job(root: Path, prepared: Path, uri: str, params: Params, parent: str, **kw: Any) -> Any:
    from fmnist.tuning.study import fingerprint, storage_url
    from fmnist.tuning.trial import TrialJob

    ids = fingerprint(uri), fingerprint(storage_url(root))
    tuning = Tuning(params.search.study)
    return TrialJob(root, prepared, params, tuning, parent, *ids, {"data": "x"}, **kw)


def _study(root: Path, params: Params) -> Any:
    from fmnist.tuning import study as study_store

    return study_store.load(root, params.search, Tuning(params.search.study))


def _parent(uri: str) -> str:
    from fmnist.tracking import runs as tracking

    with tracking.tracked_run(uri, "fashion-mnist", run_name="search") as run_id:
        return run_id


def test_a_trial_trains_reports_each_epoch_and_nests_its_run(
    tmp_path: Path, prepared_dir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from fmnist.tracking.lifecycle import owner
    from fmnist.tracking.mlflow_store import open_store
    from fmnist.tuning.study import OWNER_ATTR, PARENT_ATTR
    from fmnist.tuning.trial import run_trial

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # the worker's own store
    open_store(tracking_uri)
    params, parent = _params(), _parent(tracking_uri)
    result = run_trial(_job(tmp_path, prepared_dir, tracking_uri, params, parent))

    assert result is not None and result.state == "complete"
    assert result.overrides["train.schedule"] == "cosine"
    assert result.epochs == 2 and result.fit_seconds > 0 and result.overhead_seconds > 0
    assert result.line().startswith(f"trial 0: val_accuracy {result.val_accuracy:.4f} complete")
    run = MlflowClient(tracking_uri).get_run(str(result.run_id))
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["fmnist.tuning.search.state"] == "complete"
    assert run.data.params["model.hidden.0.units"] == "16"
    history = MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    study = _study(tmp_path, params)
    (trial,) = study.trials
    assert trial.value == pytest.approx(result.val_accuracy)
    # claimed by this process, for this search's run
    assert trial.user_attrs[OWNER_ATTR] == owner() and trial.user_attrs[PARENT_ATTR] == parent
    assert sorted(trial.intermediate_values) == [1, 2]


def test_a_diverging_trial_fails_alone_and_a_late_one_never_starts(
    tmp_path: Path, prepared_dir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from fmnist.process.errors import SearchError
    from fmnist.tracking.mlflow_store import open_store
    from fmnist.tuning.trial import run_trial

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    open_store(tracking_uri)
    params = _params(optimizers=["sgd"], learning_rate=[1e30, 1e30], schedules=["constant"])
    parent = _parent(tracking_uri)
    result = run_trial(_job(tmp_path, prepared_dir, tracking_uri, params, parent))
    assert result is not None and result.state == "failed"
    assert result.error and result.error.startswith("training diverged: loss nan at epoch 1")
    assert MlflowClient(tracking_uri).get_run(str(result.run_id)).info.status == "FAILED"
    assert _study(tmp_path, params).trials[0].state.name == "FAIL"

    late = _job(tmp_path, prepared_dir, tracking_uri, params, parent, deadline=time.time() - 1)
    assert run_trial(late) is None
    assert len(_study(tmp_path, params).trials) == 1

    # a worker whose store is not the search's refuses before it asks the study for a trial
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(SearchError, match="MLflow store is not the search's"):
        run_trial(_job(tmp_path, prepared_dir, tracking_uri, params, parent))
    assert len(_study(tmp_path, params).trials) == 1
