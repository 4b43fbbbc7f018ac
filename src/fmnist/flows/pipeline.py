"""Prefect flow `fashion-mnist-pipeline`: the DVC pipeline as a tracked, deployable run. DVC
runs the stages; flow parameters become an experiment's `--set-param`s (params.yaml is never
edited). Unchanged data, code and params run nothing: the version reused is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from fmnist.flows.common import flow_run_label, stage_env, tracking_uri
from fmnist.flows.report import report_experiment
from fmnist.params.config import Optimizer
from fmnist.params.overrides import RunOverrides
from fmnist.pipeline import dvc_cli

ARTIFACT_KEY = "fashion-mnist-model"
EPOCHS_ARTIFACT_KEY = "fashion-mnist-epochs"


@task(name="download", retries=2, retry_delay_seconds=10)
def download(root: Path, env: dict[str, str]) -> None:
    """The download stage in the workspace: data lands in the DVC cache every run shares."""
    dvc_cli.reproduce(root, "download", env, get_run_logger().info)


@task(name="experiment")
def experiment(
    root: Path, name: str, set_params: list[str], env: dict[str, str], force: bool = False
) -> dvc_cli.ExperimentRun:
    """prepare -> train -> evaluate -> register as DVC experiment NAME; its commit, and which
    stages it recorded anew (force: DVC runs every one)."""
    return dvc_cli.run_experiment(root, name, set_params, env, get_run_logger().info, force=force)


@task(name="report")
def report(root: Path, run: dvc_cli.ExperimentRun) -> dict[str, Any]:
    """The markdown and per-epoch table artifacts of the registered model; says so (log line,
    artifact's first line) when DVC reused an earlier run's version instead of registering
    (register's record in dvc.lock is the baseline commit's)."""
    reused = "register" in run.unchanged
    result = report_experiment(root, run.ref, run.name, reused=reused)
    if result.reuse:
        get_run_logger().info(result.reuse)
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=result.markdown, description="Registered model"
    )
    create_table_artifact(
        key=EPOCHS_ARTIFACT_KEY, table=result.epochs, description="Per-epoch metrics"
    )
    return {
        "version": result.version,
        "run_id": result.run_id,
        "experiment": run.name,
        "reused": reused,
    }


@flow(name="fashion-mnist-pipeline")
def pipeline(
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: Optimizer | None = None,
    learning_rate: float | None = None,
    hidden_units: list[int] | None = None,
    hidden_activation: str | None = None,
    model_name: str | None = None,
    download_retries: int = 2,
    download_retry_delay: float = 10.0,
    force: bool = False,
) -> dict[str, Any]:
    """download -> prepare -> train -> evaluate -> register; None keeps params.yaml's value.
    force: run every stage even if DVC already has their outputs (a new version)."""
    root = Path.cwd()
    overrides = RunOverrides(
        epochs, batch_size, optimizer, learning_rate, hidden_units, hidden_activation, model_name
    )
    set_params = dvc_cli.set_params_for(root, overrides)  # a bad override fails here
    env = stage_env(tracking_uri(root))
    download.with_options(retries=download_retries, retry_delay_seconds=download_retry_delay)(
        root, env
    )
    run = experiment(root, flow_run_label("pipeline"), set_params, env, force)
    return report(root, run)
