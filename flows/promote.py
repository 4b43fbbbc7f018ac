"""Prefect flow `promote-model`: `fmnist promote` as a deployment (wiring only)."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from fmnist.config import load_params
from fmnist.stages import run_promote
from fmnist.tracking import resolve_tracking_uri


@task(name="promote")
def promote(version: int, force: bool) -> str:
    """The registry's promotion (threshold unless forced); a refusal fails the run."""
    root = Path.cwd()
    params = load_params(root / "params.yaml")
    uri = resolve_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"), root)
    reason = run_promote(params, version, force, uri)
    message = f"`{params.register_.model_name}` v{version} is now **@champion**: {reason}"
    get_run_logger().info(message)
    create_markdown_artifact(key="fashion-mnist-promotion", markdown=message)
    return reason


@flow(name="promote-model")
def promote_model(version: int, force: bool = False) -> str:
    """Make VERSION the registered model's `champion` (refused below min_accuracy unless force)."""
    return promote(version, force)
