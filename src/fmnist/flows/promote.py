"""Prefect flow `promote-model`: `fmnist promote` as a deployment (wiring only)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from fmnist.flows.common import tracking_uri
from fmnist.params.config import load_params
from fmnist.process import layout
from fmnist.registry.promotion import by_hand_lines
from fmnist.registry.register import promote as promote_version


@task(name="promote")
def promote(version: int, force: bool) -> str:
    """The registry's promotion (threshold unless forced); a refusal fails the run."""
    root = Path.cwd()
    params = load_params(root / layout.PARAMS)
    decision = promote_version(params, version, force, tracking_uri(root))
    lines = by_hand_lines(params.register_.model_name, version, decision)
    for line in lines:
        get_run_logger().info(line)
    create_markdown_artifact(key="fashion-mnist-promotion", markdown="\n\n".join(lines))
    return decision.reason


@flow(name="promote-model")
def promote_model(version: int, force: bool = False) -> str:
    """Make VERSION the registered model's `champion` (refused below min_accuracy unless force)."""
    return promote(version, force)
