"""`fmnist search` in a real git + DVC repo on synthetic data, trials on a real local Dask
cluster, the study in sqlite, MLflow in sqlite: nested trial runs, a deliberately bad trial
pruned, resuming the study, the best written back as a DVC experiment and registered, and
Ctrl-C in the middle of it (nothing left running, the next run continues)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import synthetic_images, write_raw
from tests.integration.conftest import Runner, copy_repo, local_stack, make_runner, runner_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE = {
    "layers": [1, 2],
    "units": [8, 32],
    "activations": ["relu"],
    "dropout": [0.0, 0.0],
    "batch_norm": [False],
    "optimizers": ["adam", "sgd"],
    "learning_rate": [1.0e-4, 1.0e-2],
    "schedules": ["constant"],
    "batch_sizes": [32],
    "epochs": [2, 3],
}
BAD_TRIAL = {  # sgd at the lowest rate on the narrowest net: far below the others each epoch
    "layers": 1, "activation": "relu", "batch_norm": False, "dropout": 0.0, "units_1": 8,
    "optimizer": "sgd", "learning_rate": 1.0e-4, "schedule": "constant", "batch_size": 32,
    "epochs": 3,
}  # fmt: skip


def synthetic_repo(tmp_path: Path, **search: Any) -> tuple[Path, Runner]:
    """The project on synthetic data: download and prepare recorded by `dvc commit` (so DVC
    has them and the run's `dvc repro prepare` runs nothing), params.yaml `search` updated,
    any accuracy good enough for champion."""
    repo = copy_repo(tmp_path / "repo")
    run = make_runner(repo)
    arrays = {"train": synthetic_images(600, seed=5), "test": synthetic_images(200, seed=4)}
    write_raw(repo / "data" / "raw", arrays)
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["search"].update(search)
    params["register"]["min_accuracy"] = 0.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")
    run("fmnist", "prepare", "--raw", "data/raw", "--out", "data/prepared")
    run("dvc", "commit", "--force", "download", "prepare")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "synthetic data, tiny search space")
    return repo, run


@pytest.fixture
def search_repo(tmp_path: Path) -> tuple[Path, Runner]:
    """A tiny search space; refit_val_size null: the best's DVC experiment trains on the
    trials' split, so its validation accuracy can be compared with the trial's (the
    production test refits)."""
    return synthetic_repo(
        tmp_path, startup_trials=2, warmup_epochs=1, trials=3, space=SPACE, refit_val_size=None
    )


def mlflow_runs(repo: Path) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fashion-mnist")
    return client.search_runs([experiment.experiment_id], max_results=500)


def _study(repo: Path) -> Any:
    import optuna

    return optuna.load_study(
        study_name="fashion-mnist-search", storage=f"sqlite:///{repo / 'optuna.db'}"
    )


def test_search_nests_trials_prunes_a_bad_one_resumes_and_registers_the_best(
    search_repo: tuple[Path, Runner],
) -> None:
    repo, run = search_repo
    done = run("fmnist", "search", "--trials", "3", "--workers", "2")
    first = done.stdout
    assert len(re.findall(r"(?m)^trial \d+: val_accuracy", first)) == 3, first
    # fmnist's own stderr lines are errors and warnings: a search that works prints none
    # (what else is there, TensorFlow's start-up lines included, is the libraries')
    assert not re.search(r"(?m)^fmnist|Traceback", done.stderr), done.stderr
    assert "2 Dask workers ready" in first
    name = re.search(r"DVC experiment (\S+):", first)
    assert name, first
    assert re.search(r"registered fashion-mnist v1 .*test_accuracy [01]\.\d{4}", first), first

    runs = mlflow_runs(repo)
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [r for r in children if "fmnist.tuning.search.trial" in r.data.tags]
    assert len(trials) == 3 and len(children) == 4  # 3 trials + the best's training
    assert parent.info.status == "FINISHED"
    assert {r.info.status for r in children} == {"FINISHED"}
    assert (
        "best_val_accuracy" in parent.data.metrics and "best_test_accuracy" in parent.data.metrics
    )
    assert all(r.data.metrics["overhead_seconds"] > 0 for r in trials)
    study = _study(repo)
    best = study.best_trial
    assert parent.data.tags["fmnist.tuning.search.best_trial"] == str(best.number)
    # the best's training (a DVC experiment) trained exactly the trial's network
    training = next(r for r in children if r not in trials)
    assert training.data.params["train.optimizer"] == best.params["optimizer"]
    assert training.data.params["model.hidden.0.units"] == str(best.params["units_1"])
    assert round(training.data.metrics["val_accuracy"], 4) == round(best.value, 4)
    # `dvc exp apply` then `dvc repro`: the experiment is what DVC has, nothing reruns
    run("dvc", "exp", "apply", name.group(1))
    assert "Data and pipelines are up to date" in run("dvc", "status").stdout
    run("git", "checkout", "--", ".")  # back to the committed params for the next run

    # Resume: a deliberately bad trial enqueued; the pruner stops it, the study grows.
    study.enqueue_trial(BAD_TRIAL)
    second = run("fmnist", "search", "--trials", "1", "--workers", "1").stdout
    assert re.search(r"(?m)^trial 3: val_accuracy \S+ pruned at epoch [12] ", second), second
    assert "best unchanged" in second, second
    study = _study(repo)
    assert len(study.trials) == 4
    assert study.trials[3].state.name == "PRUNED"
    pruned = next(
        r for r in mlflow_runs(repo) if r.data.tags.get("fmnist.tuning.search.trial") == "3"
    )
    assert pruned.data.tags["fmnist.tuning.search.state"] == "pruned"
    assert pruned.info.status == "FINISHED"


def ctrl_c(repo: Path, args: list[str], after: float) -> tuple[int, str]:
    """args started in repo, Ctrl-C `after` s once its Dask workers are training: (exit
    code, stderr)."""
    proc = subprocess.Popen(
        args, cwd=repo, env=runner_env(repo), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the workers are training once they are ready
            if "Dask workers ready" in line:
                break
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def test_ctrl_c_leaves_no_run_or_trial_running_and_the_next_run_continues(
    search_repo: tuple[Path, Runner],
) -> None:
    repo, run = search_repo
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["search"]["space"]["epochs"] = [30, 40]  # long enough to be interrupted mid-trial
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")
    returncode, err = ctrl_c(repo, ["fmnist", "search", "--trials", "6", "--workers", "2"], 3)
    assert returncode == 130, err
    assert "fmnist search: interrupted (SIGINT)" in err
    assert "Traceback" not in err, err

    runs = mlflow_runs(repo)
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert parent.info.status == "KILLED"
    study = _study(repo)
    assert not [t.number for t in study.trials if t.state.name == "RUNNING"]
    before = len(study.trials)

    params["search"]["space"]["epochs"] = [2, 2]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")
    again = run("fmnist", "search", "--trials", "2", "--workers", "2").stdout
    assert len(_study(repo).trials) == before + 2, again
    assert re.search(r"registered fashion-mnist v1 ", again), again


def test_the_search_deployment_completes_and_registers_its_best(
    search_repo: tuple[Path, Runner],
) -> None:
    """`prefect deployment run 'fashion-mnist-search/default'` on a real Prefect server and
    worker (the stack): trials as tasks on a local Dask cluster, the best registered."""
    repo, _ = search_repo
    with local_stack(repo) as running:
        run = make_runner(repo, running.env)
        done = run(
            "prefect", "deployment", "run", "fashion-mnist-search/default",
            "-p", "trials=3", "-p", "dask_workers=2", "--watch", "--watch-timeout", "600",
        )  # fmt: skip
        assert "Completed" in done.stdout, done.stdout

    runs = mlflow_runs(repo)
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
              and "fmnist.tuning.search.trial" in r.data.tags]  # fmt: skip
    assert len(trials) == 3
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fmnist.registered.version"] == "1"
    assert len(_study(repo).trials) == 3
