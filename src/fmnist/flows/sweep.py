"""Prefect flow `fashion-mnist-sweep`: the tutorial's optimizer comparison in one parallel run.

Wiring only. Each cell of the grid (optimizer x hidden activation) is a DVC experiment
(prepare -> train -> evaluate) whose MLflow run nests under the sweep's parent run; the
trainings run in parallel on Dask (a local cluster, or the scheduler at `dask_address`, whose
workers need this project installed and the repo at the same path). Then the comparison
artifact, and the best training by validation accuracy registered under the promotion rule
(which compares test accuracy with the champion's). A training DVC reused (same data, code
and params as an earlier run) gets a child run linking to that run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from fmnist.flows.common import flow_run_label, stage_env, tracking_uri
from fmnist.params.config import load_params
from fmnist.params.overrides import RunOverrides
from fmnist.pipeline import dvc_cli
from fmnist.process import layout
from fmnist.tracking.runs import sweep_run
from fmnist.tuning import sweep as sweeping
from fmnist.tuning.grid import ACTIVATIONS, OPTIMIZERS, Outcome, comparison_rows

ARTIFACT_KEY = "fashion-mnist-sweep"


@task(name="prepare", retries=2, retry_delay_seconds=10)
def prepare(root: Path, uri: str) -> None:
    """download -> prepare in the workspace, once: every training then restores the data
    from DVC's cache instead of fetching and preparing it again."""
    dvc_cli.reproduce(root, "prepare", stage_env(uri), get_run_logger().info)


@task(name="training", task_run_name="training-{planned.training.name}")
def training(
    root: Path,
    planned: sweeping.PlannedTraining,
    parent_run_id: str,
    uri: str,
) -> Outcome:
    """One cell of the grid as a DVC experiment; its MLflow run is the parent's child (or,
    if DVC reused an earlier training, a child run linking to it). The environment is this
    worker's own, never a parameter (Prefect stores parameters)."""
    return sweeping.run_training(
        root, planned, parent_run_id, stage_env(uri), uri, get_run_logger().info
    )


@flow(name="sweep-trainings")
def trainings(
    root: Path,
    plan: list[sweeping.PlannedTraining],
    parent_run_id: str,
    uri: str,
) -> list[Outcome]:
    """Every training at once on the task runner; a failed one is reported, not raised."""
    futures = [training.submit(root, p, parent_run_id, uri) for p in plan]
    outcomes = []
    for planned, future in zip(plan, futures, strict=True):
        result = future.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            get_run_logger().warning("%s failed: %s", planned.training.name, result)
            result = sweeping.failed_training(planned, result)
        outcomes.append(result)
    return outcomes


def task_runner(
    dask_address: str | None, dask_workers: int | None, trainings: int
) -> DaskTaskRunner:
    """The given Dask scheduler, else a local cluster of dask_workers.

    Default: one per CPU (at most one per training). Measured on 2 CPUs, the 8-training
    sweep through this flow took 139.7 and 129.2 s with 2 workers, 150.5 and 142.5 s with 4
    (`fmnist sweep`'s threads gained from 4: 109 s against 141 s; here each worker is a
    process of its own).
    """
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    workers = dask_workers or max(1, min(trainings, os.cpu_count() or 1))
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,  # one training per worker; TensorFlow threads inside
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )


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
    root = Path.cwd()
    name = flow_run_label("sweep")
    base = RunOverrides(epochs, batch_size, None, learning_rate, hidden_units)
    plan = sweeping.plan(root, name, optimizers, activations, base)  # bad value: fails now
    params = load_params(root / layout.PARAMS)
    uri = tracking_uri(root)
    prepare(root, uri)
    with sweep_run(uri, params.tracking.experiment, name, plan) as parent_run_id:
        runner = task_runner(dask_address, dask_workers, len(plan))
        outcomes = trainings.with_options(task_runner=runner)(  # type: ignore[arg-type]
            root, plan, parent_run_id, uri
        )
        create_table_artifact(  # first: a sweep where every training failed shows them too
            key=ARTIFACT_KEY,
            table=comparison_rows(outcomes),
            description=f"Sweep {name}: every training, best first",
        )
        result = sweeping.finish(params, root, outcomes, uri)
    return {"sweep": name, "parent_run_id": parent_run_id, "registered": result.registered}
