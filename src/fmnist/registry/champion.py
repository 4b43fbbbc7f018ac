"""Moving `champion` under the promotion lock: the promotion rule applied to a version, and
the rollback to the one before; a failure moves no alias."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fmnist.process.errors import TrackingError
from fmnist.registry.lock import promotion_lock
from fmnist.registry.promotion import (
    CHAMPION,
    METRIC,
    Decision,
    decide_champion_again,
    decide_promotion,
    previous_champion,
)
from fmnist.registry.versions import champion_of, client_for, not_found
from fmnist.tracking.mlflow_store import mlflow_errors

HISTORY_TAG = "fmnist.champion_history"  # versions that held `champion`, oldest first


def _history(client: Any, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags
    return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _version(client: Any, name: str, version: int) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not_found(exc):
            raise TrackingError(f"{name} has no version {version}") from None
        raise


def _move_champion(client: Any, name: str, version: int, history: list[int]) -> None:
    """Point `champion` at version and record it; if recording fails, put the alias back."""
    before = champion_of(client, name)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    try:
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    except BaseException:
        if before:
            client.set_registered_model_alias(name, CHAMPION, str(before[0]))
        else:
            client.delete_registered_model_alias(name, CHAMPION)
        raise


def promote(
    uri: str,
    name: str,
    version: int,
    *,
    min_accuracy: float,
    min_delta: float,
    require_better: bool,
    force: bool = False,
    echo: Callable[[str], None] = print,
    checkpoint: Callable[[], None] = lambda: None,
) -> Decision:
    """Apply the promotion rule to a version, record the decision on it, move `champion`.
    checkpoint is called while the lock is waited for (a safe point to stop at)."""
    client = client_for(uri)
    with (
        mlflow_errors(f"promoting {name} v{version}"),
        promotion_lock(client, name, echo=echo, checkpoint=checkpoint),
    ):
        candidate = _version(client, name, version)
        if METRIC not in candidate.tags:
            raise TrackingError(f"{name} v{version} has no {METRIC} tag to judge it by")
        current = champion_of(client, name)
        already = decide_champion_again(version, current)
        if already:
            return already  # nothing to move or record
        run_id = candidate.run_id  # a version without a run is not judged by it
        status = "FINISHED" if force or not run_id else client.get_run(run_id).info.status
        if status != "FINISHED":
            reason = f"its run {run_id} is {status}, not FINISHED (--force to promote)"
            decision = Decision(False, reason)
        else:
            decision = decide_promotion(
                float(candidate.tags[METRIC]),
                current,
                min_accuracy=min_accuracy,
                min_delta=min_delta,
                require_better=require_better,
                force=force,
            )
        for key, value in decision.as_tags().items():
            client.set_model_version_tag(name, str(version), key, value)
        if decision.promote:
            _move_champion(client, name, version, [*_history(client, name), version])
        return decision


def rollback(uri: str, name: str) -> tuple[int, int]:
    """Give `champion` back to the previous champion; returns (from, to)."""
    client = client_for(uri)
    with mlflow_errors(f"rolling back {name}"), promotion_lock(client, name):
        current = champion_of(client, name)
        if current is None:
            raise TrackingError(f"{name} has no champion to roll back")
        history = _history(client, name)
        existing = {int(v.version) for v in client.search_model_versions(f"name = '{name}'")}
        previous = previous_champion(history, current[0], existing)
        if previous is None:
            raise TrackingError(f"{name}: no previous champion to roll back to")
        kept = history[: len(history) - history[::-1].index(previous)]
        _move_champion(client, name, previous, kept)
        client.set_model_version_tag(name, str(current[0]), "fmnist.rolled_back", "true")
        return current[0], previous
