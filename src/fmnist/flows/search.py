"""Prefect flows `fashion-mnist-search` and `fashion-mnist-sweep` (a study on the grid optimizers
x hidden activations), one tuning run: each trial a task on Dask (a `dask_address` scheduler's
workers need this project, the repo at the same path and FMNIST_SEARCH_STORAGE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from fmnist.flows.pipeline import flow_run_label, stage_env
from fmnist.params.config import Params, load_params
from fmnist.params.overrides import RunOverrides, dotted_overrides
from fmnist.pipeline import dvc_cli
from fmnist.process import layout
from fmnist.tracking.mlflow_store import environment_tracking_uri
from fmnist.tuning import search as searching
from fmnist.tuning.space import ACTIVATIONS, OPTIMIZERS, Tuning, grid
from fmnist.tuning.trial import TrialJob, TrialRecord, run_trial


@task(name="prepare", retries=2, retry_delay_seconds=10)
def prepare(root: Path) -> None:
    """download -> prepare in the workspace, once: every trial reads it."""
    dvc_cli.reproduce(root, "prepare", stage_env(root), get_run_logger().info)


@task(name="trial", task_run_name="trial-{index}")
def trial(job: TrialJob, index: int) -> TrialRecord | None:
    """One trial (None: the timeout passed before it could start)."""
    result = run_trial(job)
    if result is not None:
        get_run_logger().info(result.line())
    return result


@flow(name="search-trials")
def run_trials(job: TrialJob, trials: int) -> list[TrialRecord]:
    """Every trial at once; each asks the study when it starts, learning from those done."""
    futures = [trial.submit(job, i) for i in range(trials)]
    results = []
    for future in futures:
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            get_run_logger().warning("a trial failed outside its training: %s", result)
        elif result is not None:
            results.append(result)
    return results


def tune(
    params: Params,
    tuning: Tuning,
    trials: int,
    timeout: float | None,
    dask_address: str | None,
    dask_workers: int | None,
) -> dict[str, Any]:
    """The run: prepare, the trials (a worker process each), the table artifact, the best."""
    root = Path.cwd()
    uri = environment_tracking_uri(root)
    prepare(root)
    logger = get_run_logger()

    def on_dask(job: TrialJob, n: int, workers: int) -> list[TrialRecord]:
        local = {"n_workers": workers, "threads_per_worker": 1, "host": "127.0.0.1"}
        cluster = None if dask_address else local | {"dashboard_address": None}
        runner = DaskTaskRunner(address=dask_address, cluster_kwargs=cluster)
        return run_trials.with_options(task_runner=runner)(job, n)  # type: ignore[arg-type]

    def table(rows: list[dict[str, Any]]) -> None:
        what = f"{tuning.kind.capitalize()} {tuning.study}: every trial, best first"
        create_table_artifact(key=f"fashion-mnist-{tuning.kind}", table=rows, description=what)

    name = flow_run_label(tuning.kind)
    result = searching.tune(
        params, tuning, name, trials, dask_workers, uri, on_dask, timeout, logger.info, table
    )
    return {
        tuning.kind: tuning.study,
        "parent_run_id": result.parent_run_id,
        "trials": result.trials,
        "best_trial": result.best.number,
        "best_val_accuracy": result.best.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "experiment": result.experiment,
        "registered": result.registered,
    }


@flow(name="fashion-mnist-search")
def search(
    trials: int | None = None,
    timeout: float | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """Add `trials` trials (default params.yaml search.trials) to the study, in parallel;
    register the best by validation accuracy. None keeps params.yaml's value."""
    params = load_params(Path.cwd() / layout.PARAMS)
    n = trials or params.search.trials
    return tune(params, Tuning(params.search.study), n, timeout, dask_address, dask_workers)


@flow(name="fashion-mnist-sweep")
def sweep(
    optimizers: list[str] = list(OPTIMIZERS),  # noqa: B006 (Prefect parameters are copied)
    activations: list[str] = list(ACTIVATIONS),  # noqa: B006
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    hidden_units: list[int] | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """optimizers x activations, in parallel; registers the best by validation accuracy.
    None keeps params.yaml's value."""
    cells = grid(optimizers, activations)  # a bad value: fails now, before anything runs
    path = Path.cwd() / layout.PARAMS
    hidden = [h.model_dump(mode="json") for h in load_params(path).model.hidden]
    base = RunOverrides(epochs, batch_size, None, learning_rate, hidden_units)
    params = load_params(path, dotted_overrides(base, hidden))
    return tune(params, Tuning(flow_run_label("sweep"), cells), 0, 0, dask_address, dask_workers)
