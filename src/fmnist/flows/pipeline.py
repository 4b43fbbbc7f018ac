"""Prefect flow `fashion-mnist-pipeline`: the DVC pipeline as a tracked, deployable run. DVC
runs the stages; flow parameters become an experiment's `--set-param`s (params.yaml is never
edited). Unchanged data, code and params run nothing: the version reused is reported. And
`promote-model`: `fmnist promote` as a deployment (wiring only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from fmnist.params.config import Optimizer, load_params
from fmnist.params.overrides import RunOverrides, dotted_overrides, set_param_args
from fmnist.pipeline import dvc_cli, records
from fmnist.pipeline.report import epoch_rows, model_markdown, reuse_line
from fmnist.process import layout
from fmnist.registry.promotion import by_hand_lines
from fmnist.registry.register import promote as promote_version
from fmnist.tracking.mlflow_store import environment_tracking_uri

ARTIFACT_KEY = "fashion-mnist-model"
EPOCHS_ARTIFACT_KEY = "fashion-mnist-epochs"


def flow_run_label(default: str) -> str:
    """`<flow run name>-<id prefix>`: names the DVC experiment or sweep this flow run makes."""
    run_id = flow_run.get_id() or ""
    return f"{flow_run.get_name() or default}-{run_id[:8]}".strip("-")


def stage_env(root: Path) -> dict[str, str]:
    """DVC's env: this worker's, with its store (not a flow parameter: Prefect keeps those)."""
    return dvc_cli.stage_env({"MLFLOW_TRACKING_URI": environment_tracking_uri(root)})


@task(name="download", retries=2, retry_delay_seconds=10)
def download(root: Path, env: dict[str, str]) -> None:
    """The download stage in the workspace: data lands in the DVC cache every run shares."""
    dvc_cli.reproduce(root, "download", env, get_run_logger().info)


@task(name="experiment")
def experiment(
    root: Path, name: str, set_params: list[str], env: dict[str, str], force: bool = False
) -> dvc_cli.ExperimentRun:
    """prepare -> train -> evaluate -> register as DVC experiment NAME (force: every stage runs)."""
    return dvc_cli.run_experiment(root, name, set_params, env, get_run_logger().info, force=force)


@task(name="report")
def report(root: Path, run: dvc_cli.ExperimentRun) -> dict[str, Any]:
    """The registered model's markdown and per-epoch artifacts from the experiment's commit; says
    so (log line, artifact's first line) when DVC reused an earlier run's version."""
    registered = dvc_cli.experiment_json(root, run.ref, layout.REGISTERED)
    trained = dvc_cli.experiment_json(root, run.ref, layout.TRAINED)
    version, run_id = int(registered["version"]), registered["run_id"]
    reused = "register" in run.unchanged
    note = reuse_line(version, run_id) if reused else None
    markdown = model_markdown(
        model_display_name=trained[records.MODEL_NAME_TAG],
        summary=dvc_cli.experiment_file(root, run.ref, layout.SUMMARY),
        metrics=dvc_cli.experiment_json(root, run.ref, layout.TEST_METRICS),
        registered=registered,
        experiment=run.name,
        note=note,
    )
    epochs = epoch_rows(dvc_cli.experiment_file(root, run.ref, layout.HISTORY))
    if note:
        get_run_logger().info(note)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=markdown, description="Registered model")
    create_table_artifact(key=EPOCHS_ARTIFACT_KEY, table=epochs, description="Per-epoch metrics")
    return {"version": version, "run_id": run_id, "experiment": run.name, "reused": reused}


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
    hidden = load_params(root / layout.PARAMS).model.hidden
    dotted = dotted_overrides(overrides, [h.model_dump(exclude_defaults=True) for h in hidden])
    load_params(root / layout.PARAMS, dotted)  # a bad override fails here, before any stage
    env = stage_env(root)
    download.with_options(retries=download_retries, retry_delay_seconds=download_retry_delay)(
        root, env
    )
    run = experiment(root, flow_run_label("pipeline"), set_param_args(dotted), env, force)
    return report(root, run)


@task(name="promote")
def promote(version: int, force: bool) -> str:
    """The registry's promotion (threshold unless forced); a refusal fails the run."""
    root = Path.cwd()
    params = load_params(root / layout.PARAMS)
    decision = promote_version(params, version, force, environment_tracking_uri(root))
    lines = by_hand_lines(params.register_.model_name, version, decision)
    for line in lines:
        get_run_logger().info(line)
    create_markdown_artifact(key="fashion-mnist-promotion", markdown="\n\n".join(lines))
    return decision.reason


@flow(name="promote-model")
def promote_model(version: int, force: bool = False) -> str:
    """Make VERSION the registered model's `champion` (refused below min_accuracy unless force)."""
    return promote(version, force)
