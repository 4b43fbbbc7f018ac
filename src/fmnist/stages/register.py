"""The register stage: the trained model as a new registry version (alias `challenger`),
then the promotion rule; models/registered.json is the version as the registry reads back.

Also the promotion by hand (`fmnist promote`), with the same section's thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist import records
from fmnist.config import Params
from fmnist.core.promotion import Decision
from fmnist.errors import FmnistError, TrackingError, first_line
from fmnist.files import read_json, read_text, write_json


def run(
    params: Params,
    trained_path: Path,
    metrics_path: Path,
    summary_path: Path,
    out_path: Path,
    tracking_uri: str,
) -> dict[str, Any]:
    """Register what train recorded; returns the registered record (as written to out_path)."""
    trained = records.read_trained(trained_path)
    metrics = read_json(metrics_path)
    summary = read_text(summary_path)
    record = register_trained(params, trained, metrics, summary, tracking_uri)
    write_json(out_path, record)
    return record


def register_trained(
    params: Params,
    trained: Mapping[str, Any],
    metrics: Mapping[str, float],
    summary: str,
    tracking_uri: str,
) -> dict[str, Any]:
    """Register a trained record with its test metrics and Keras summary, then apply the
    promotion rule; returns the registered record, read back from the registry."""
    from fmnist.core.report import describe_version
    from fmnist.registry import register_version, registered_record
    from fmnist.tracking import run_params

    tags = {
        **{k: f"{v:.4f}" for k, v in metrics.items()},
        "run_id": trained["run_id"],
        "data.prepared": trained[records.DATA_TAG],
        "git.commit": trained[records.COMMIT_TAG],
        "optimizer": trained["optimizer"],
        "model.name": trained[records.MODEL_NAME_TAG],
        # the params the model was trained with (a flow run's overrides included)
        **{
            f"params.{k}": v
            for k, v in run_params(tracking_uri, trained["run_id"]).items()
            if k.startswith(("model.", "train."))
        },
    }
    name = params.register_.model_name
    version, created, challenger_before = register_version(
        tracking_uri,
        name,
        trained["model_uri"],
        trained["run_id"],
        description=describe_version(trained[records.MODEL_NAME_TAG], summary, metrics),
        tags=tags,
    )
    number = int(version.version)
    _promote_or_undo(params, number, tracking_uri, created, challenger_before)
    return registered_record(tracking_uri, name, number)


def _promote_or_undo(
    params: Params, version: int, tracking_uri: str, created: bool, challenger_before: Any
) -> None:
    """The promotion rule on a version; if it fails and this step created the version, the
    registration is undone (`challenger` goes back to challenger_before)."""
    from fmnist.registry import undo_registration

    try:
        _apply_rule(params, version, tracking_uri, by_hand=False)
    except BaseException as exc:
        name = params.register_.model_name
        left = (
            undo_registration(tracking_uri, name, version, challenger_before)
            if created
            else f"v{version} stays as it was"
        )
        if isinstance(exc, FmnistError):
            raise TrackingError(f"{first_line(exc)}; {left}") from None
        raise


def _apply_rule(
    params: Params, version: int, tracking_uri: str, *, by_hand: bool, force: bool = False
) -> Decision:
    """The registry's promotion with this section's thresholds: automatic, or by hand."""
    from fmnist.champion import promote as promote_version

    cfg = params.register_
    return promote_version(
        tracking_uri,
        cfg.model_name,
        version,
        min_accuracy=cfg.min_accuracy,
        min_delta=cfg.min_delta,
        require_better=not by_hand,
        force=force,
    )


def promote(params: Params, version: int, force: bool, tracking_uri: str) -> str:
    """Make a version `champion` by hand (threshold unless forced); returns why it was."""
    decision = _apply_rule(params, version, tracking_uri, by_hand=True, force=force)
    if not decision.promote:
        raise TrackingError(
            f"{params.register_.model_name} v{version} not promoted: {decision.reason}"
        )
    return decision.reason
