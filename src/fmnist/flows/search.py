"""Prefect flow `fashion-mnist-search`: the Optuna search as a deployable run.

Wiring only (fmnist.tuning.search does the work). The data is prepared once through DVC; each trial
is a task on Dask (a local cluster, or the scheduler at `dask_address`, whose workers need
this project installed, the repo at the same path and FMNIST_SEARCH_STORAGE when the study
is not in the repo's optuna.db); each trial asks the shared study for a network, trains it,
and records itself as a nested MLflow run. Then the study's summary, and the best trial
written back as a DVC experiment that trains, evaluates and registers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from fmnist.flows.common import flow_run_label, tracking_uri
from fmnist.flows.sweep import prepare, task_runner
from fmnist.params.config import load_params
from fmnist.process import layout
from fmnist.tuning import search as searching
from fmnist.tuning.report import rows
from fmnist.tuning.space import describe
from fmnist.tuning.trial import TrialJob, TrialResult, run_trial

ARTIFACT_KEY = "fashion-mnist-search"


@task(name="trial", task_run_name="trial-{index}")
def trial(job: TrialJob, index: int) -> TrialResult | None:
    """One trial (None: the timeout passed before it could start)."""
    result = run_trial(job)
    if result is not None:
        get_run_logger().info(result.line())
    return result


@flow(name="search-trials")
def run_trials(job: TrialJob, trials: int) -> list[TrialResult]:
    """Every trial submitted at once: the workers take them one at a time each, and each
    asks the study when it starts, so it learns from every trial finished before it."""
    futures = [trial.submit(job, i) for i in range(trials)]
    results = []
    for future in futures:
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            get_run_logger().warning("a trial failed outside its training: %s", result)
        elif result is not None:
            results.append(result)
    return results


@flow(name="fashion-mnist-search")
def search(
    trials: int | None = None,
    timeout: float | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """Add `trials` trials (default params.yaml search.trials) to the study, in parallel;
    register the best by validation accuracy. None keeps params.yaml's value."""
    import os

    root = Path.cwd()
    params = load_params(root / layout.PARAMS)
    n = trials or params.search.trials
    workers = dask_workers or max(1, min(n, os.cpu_count() or 1))
    uri = tracking_uri(root)
    prepare(root, uri)
    logger = get_run_logger()
    with searching.search_run(uri, params, flow_run_label("search"), root, logger.info) as parent:
        job = searching.jobs(root, params, parent, uri, workers, timeout)
        runner = task_runner(dask_address, workers, n)
        results = run_trials.with_options(task_runner=runner)(job, n)  # type: ignore[arg-type]
        result = searching.finish(params, root, parent, results, uri, logger.info)
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=rows([result.best], describe),
        description=f"Study {params.search.study}: the best trial, registered",
    )
    return {
        "study": params.search.study,
        "parent_run_id": parent,
        "trials": result.trials,
        "best_trial": result.best.number,
        "best_val_accuracy": result.best.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "experiment": result.experiment,
        "registered": result.registered,
    }
