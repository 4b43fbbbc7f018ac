"""`fmnist sweep` in a real git + DVC repo on synthetic data: the grid as an Optuna study, its
cells trials on a real local Dask cluster, each a run nested under the sweep's; the best by
validation accuracy written back as one DVC experiment (the test set measured once, there)
and registered; a sweep named again continues; one where every training diverges registers
nothing.

Ctrl-C in the middle of a sweep leaves nothing running; its name again runs the cells it cut."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.conftest import Runner, local_stack, make_runner
from tests.integration.test_search import ctrl_c, mlflow_runs, synthetic_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = ("fmnist", "sweep", "--optimizer", "adam", "--optimizer", "sgd", "--activation", "relu")
SLOW = ("--learning-rate", "0.0003")  # adam learns this data in 2 epochs, sgd stays at chance


@pytest.fixture
def sweep_repo(tmp_path: Path) -> tuple[Path, Runner]:
    return synthetic_repo(tmp_path)


def test_the_sweep_trains_every_cell_and_registers_the_best_on_validation(
    sweep_repo: tuple[Path, Runner],
) -> None:
    """sgd at 3e-4 stays at chance on this data in 2 epochs (a diverged training, as fmnist
    judges it; at params.yaml's 1e-3 it sometimes scrapes past 1.5 x chance): it fails its
    own run only, adam's cell wins."""
    repo, run = sweep_repo
    done = run(*TINY, *SLOW, "--epochs", "2", "--jobs", "2", "--name", "tiny")
    out = done.stdout
    assert "tiny: 2 trainings, 2 at a time" in out
    assert "2 Dask workers ready" in out
    assert re.search(r"(?m)^trial \d: val_accuracy \S+ complete \(adam-relu\)", out), out
    assert re.search(
        r"(?m)^trial \d: val_accuracy - failed: training diverged.*\(sgd-relu\)", out
    ), out
    assert not re.search(r"(?m)^fmnist|Traceback", done.stderr), done.stderr
    table = re.findall(
        r"(?m)^((?:adam|sgd)-relu) +(\S+)  (complete|failed: training diverged)", out
    )
    assert [(cell, state) for cell, _, state in table] == [
        ("adam-relu", "complete"),
        ("sgd-relu", "failed: training diverged"),
    ]  # the table: best first, failed last
    assert re.search(r"registered fashion-mnist v1 @\S+.*, test_accuracy [01]\.\d{4}", out), out
    assert "DVC experiment tiny-adam-relu:" in out

    runs = mlflow_runs(repo)
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert parent.data.tags["fmnist.tuning.sweep"] == "tiny" and parent.info.run_name == "tiny"
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = {r.info.run_name: r for r in children if "fmnist.tuning.sweep.trial" in r.data.tags}
    assert {k: r.info.status for k, r in trials.items()} == {
        "adam-relu": "FINISHED",
        "sgd-relu": "FAILED",
    }
    # chosen on validation; no trial read the test set, the written-back training did, once
    assert not [r for r in trials.values() if "test_accuracy" in r.data.metrics]
    best = trials["adam-relu"]
    assert (
        parent.data.tags["fmnist.tuning.sweep.best_trial"]
        == (best.data.tags["fmnist.tuning.sweep.trial"])
    )
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(
        best.data.metrics["val_accuracy"]
    )
    (training,) = [r for r in children if r.info.run_name not in trials]
    assert training.info.status == "FINISHED"
    assert training.data.params["train.optimizer"] == "adam"
    assert training.data.params["model.hidden.0.activation"] == "relu"
    assert training.data.params["train.epochs"] == "2"
    assert training.data.params["train.learning_rate"] == "0.0003"
    assert round(training.data.metrics["val_accuracy"], 4) == round(
        best.data.metrics["val_accuracy"], 4
    )  # the same cell, trained again by DVC on the same split
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(
        training.data.metrics["test_accuracy"]
    )
    assert parent.data.tags["fmnist.registered.version"] == "1"
    run("dvc", "exp", "apply", "tiny-adam-relu")
    assert "Data and pipelines are up to date" in run("dvc", "status").stdout
    run("git", "checkout", "--", ".")

    # Continued: every cell is done (sgd's training failed: not tried again), the best unchanged.
    again = run(*TINY, *SLOW, "--epochs", "2", "--name", "tiny").stdout
    assert not re.findall(r"(?m)^trial (\d+): ", again) and "best unchanged" in again, again
    refused = run(*TINY, *SLOW, "--epochs", "3", "--name", "tiny", check=False)
    assert refused.returncode == 10, refused.stderr
    assert "fmnist sweep: error: sweep tiny ran with other settings" in refused.stderr


def test_a_sweep_where_every_training_diverges_registers_nothing(
    sweep_repo: tuple[Path, Runner],
) -> None:
    repo, run = sweep_repo
    done = run(*TINY, "--epochs", "1", "--learning-rate", "1e30", "--name", "nan", check=False)
    assert done.returncode == 10, done.stdout + done.stderr
    line = "fmnist sweep: error: every trial of this run failed; the first: training diverged"
    assert line in done.stderr, done.stderr
    runs = mlflow_runs(repo)
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert parent.info.status == "FAILED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.status for r in children) == ["FAILED", "FAILED"]
    # the comparison is on the parent run still, every training with its error
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    local = client.download_artifacts(parent.info.run_id, "sweep/summary.json", str(repo.parent))
    table = json.loads(Path(local).read_text())["table"]
    assert len(table) == 2 and all(
        r["state"].startswith("failed: training diverged") for r in table
    )
    assert client.search_registered_models("name = 'fashion-mnist'") == []


def test_the_sweep_deployment_shows_the_comparison_and_registers_the_best(
    sweep_repo: tuple[Path, Runner],
) -> None:
    """`prefect deployment run 'fashion-mnist-sweep/default'` on a real Prefect server and
    worker: the cells as tasks on a local Dask cluster, the table artifact, the best registered."""
    repo, _ = sweep_repo
    with local_stack(repo) as running:
        run = make_runner(repo, running.env)
        done = run(
            "prefect", "deployment", "run", "fashion-mnist-sweep/default",
            "-p", 'optimizers=["adam", "sgd"]', "-p", 'activations=["relu"]', "-p", "epochs=2",
            "-p", "dask_workers=2", "--watch", "--watch-timeout", "600",
        )  # fmt: skip
        assert "Completed" in done.stdout, done.stdout
        table = " ".join(
            run("prefect", "artifact", "inspect", "fashion-mnist-sweep").stdout.split()
        )
    assert "adam-relu" in table and "failed: training diverged" in table, table

    runs = mlflow_runs(repo)
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = sorted(r.info.run_name for r in children if "fmnist.tuning.sweep.trial" in r.data.tags)
    assert trials == ["adam-relu", "sgd-relu"] and len(children) == 3
    assert parent.data.tags["fmnist.registered.version"] == "1"


def test_ctrl_c_then_the_same_name_runs_the_cells_it_cut(sweep_repo: tuple[Path, Runner]) -> None:
    import optuna

    repo, run = sweep_repo
    args = [*TINY, "--epochs", "300", "--jobs", "2", "--name", "cut"]  # long enough to cut
    returncode, err = ctrl_c(repo, args, 1)
    assert returncode == 130, err
    assert "fmnist sweep: interrupted (SIGINT)" in err and "Traceback" not in err, err
    runs = mlflow_runs(repo)
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if not r.data.tags.get("mlflow.parentRunId")]
    assert parent.info.status == "KILLED"

    def study() -> optuna.Study:
        return optuna.load_study(study_name="cut", storage=f"sqlite:///{repo / 'optuna.db'}")

    assert not [t.number for t in study().trials if t.state.name == "RUNNING"]
    again = run(*args).stdout
    assert re.findall(r"(?m)^trial \d+: ", again), again  # the cut cells, trained now
    assert "registered fashion-mnist v1 " in again, again
    done = {
        f"{t.params['optimizer']}-{t.params['activation']}"
        for t in study().trials
        if t.state.name == "COMPLETE" or "fmnist.error" in t.user_attrs
    }
    assert done == {"adam-relu", "sgd-relu"}
