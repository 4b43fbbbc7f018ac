"""What the flows share: the flow run's own name for what it creates, the store, DVC's env."""

from __future__ import annotations

from prefect.runtime import flow_run

from fmnist.pipeline import dvc_cli
from fmnist.tracking.mlflow_store import environment_tracking_uri

tracking_uri = environment_tracking_uri  # the worker's MLFLOW_TRACKING_URI, else the repo's sqlite


def flow_run_label(default: str) -> str:
    """`<flow run name>-<id prefix>`: names the DVC experiment or sweep this flow run makes."""
    run_id = flow_run.get_id() or ""
    return f"{flow_run.get_name() or default}-{run_id[:8]}".strip("-")


def stage_env(uri: str) -> dict[str, str]:
    """DVC's env: this worker's, with the store (not a flow parameter: Prefect keeps those)."""
    return dvc_cli.stage_env({"MLFLOW_TRACKING_URI": uri})
