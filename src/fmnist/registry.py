"""The MLflow model registry: register versions, aliases (never stages)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fmnist.errors import TrackingError, first_line

CHALLENGER = "challenger"


def describe_version(model_display_name: str, summary: str, metrics: Mapping[str, float]) -> str:
    """Markdown for a model version: the metrics table and the Keras summary."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    return (
        f"**{model_display_name}**\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"Keras summary:\n\n```\n{summary.rstrip()}\n```\n"
    )


def register_version(
    uri: str,
    name: str,
    model_uri: str,
    *,
    description: str,
    tags: Mapping[str, str],
    alias: str = CHALLENGER,
) -> Any:
    """Register model_uri as a new version of `name` with description, tags and alias.

    All or nothing: if describing or aliasing fails, the new version is deleted again, so a
    failed registration leaves neither a half-made version nor a moved alias.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from fmnist.tracking import open_store

    open_store(uri)
    client = MlflowClient(uri)
    try:
        version = mlflow.register_model(model_uri, name, tags=dict(tags))
    except MlflowException as exc:
        raise TrackingError(f"registering {model_uri} as {name!r}: {first_line(exc)}") from None
    try:
        client.update_model_version(name, version.version, description=description)
        client.set_registered_model_alias(name, alias, version.version)
    except BaseException as exc:
        client.delete_model_version(name, version.version)
        if isinstance(exc, MlflowException):
            raise TrackingError(
                f"registering {name} v{version.version}: {first_line(exc)}"
            ) from None
        raise
    return client.get_model_version(name, version.version)


CHAMPION = "champion"
METRIC = "test_accuracy"
HISTORY_TAG = "fmnist.champion_history"  # versions that held `champion`, oldest first
LOCK_SUFFIX = ".promotion-lock"


@dataclass(frozen=True)
class Decision:
    """Whether a version becomes champion, why, and what it was compared with."""

    promote: bool
    reason: str
    compared_version: int | None = None
    compared_accuracy: float | None = None

    def as_tags(self) -> dict[str, str]:
        return {
            "fmnist.promotion.promoted": str(self.promote).lower(),
            "fmnist.promotion.reason": self.reason,
            "fmnist.promotion.compared_version": str(self.compared_version or ""),
            "fmnist.promotion.compared_accuracy": (
                "" if self.compared_accuracy is None else f"{self.compared_accuracy:.4f}"
            ),
        }


def decide_promotion(
    accuracy: float,
    champion: tuple[int, float] | None,
    *,
    min_accuracy: float,
    min_delta: float,
    require_better: bool = True,
    force: bool = False,
) -> Decision:
    """The promotion rule: at least min_accuracy, and more than min_delta above the champion.

    By hand (`require_better=False`) only the threshold applies; `force` skips it too.
    """
    version, current = champion if champion else (None, None)
    if accuracy < min_accuracy and not force:
        reason = f"{METRIC} {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}"
        return Decision(False, reason, version, current)
    if force:
        return Decision(True, "forced by hand", version, current)
    if not require_better:
        return Decision(True, f"promoted by hand ({METRIC} {accuracy:.4f})", version, current)
    if champion is None or current is None:
        return Decision(True, f"no champion yet ({METRIC} {accuracy:.4f})")
    gain = accuracy - current
    if gain > min_delta:
        reason = f"{METRIC} {accuracy:.4f} beats champion v{version} ({current:.4f}) by {gain:+.4f}"
        return Decision(True, reason, version, current)
    reason = (
        f"{METRIC} {accuracy:.4f} does not beat champion v{version} ({current:.4f}) "
        f"by more than min_delta {min_delta:.4f}"
    )
    return Decision(False, reason, version, current)


def previous_champion(
    history: Sequence[int], current: int, existing: Collection[int]
) -> int | None:
    """The version that held champion before `current` and still exists, if any."""
    for version in reversed(history):
        if version != current and version in existing:
            return version
    return None


@contextlib.contextmanager
def promotion_lock(client: Any, name: str, timeout: float = 60.0) -> Iterator[None]:
    """A registry-wide mutex: a marker registered model only one process can create.

    Works the same on the sqlite store and on a tracking server (the database's unique
    name is the arbiter), so concurrent promotions run one after the other.
    """
    lock = f"{name}{LOCK_SUFFIX}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                lock, description=f"held while a promotion of {name} runs; safe to delete if stale"
            )
            break
        except Exception as exc:  # exists (held), or the store was busy: try again
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"{name}: another promotion holds {lock!r} ({first_line(exc)}); "
                    f"if none runs, delete that registered model"
                ) from None
            time.sleep(0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    from fmnist.tracking import open_store

    open_store(uri)
    return MlflowClient(uri)


def _champion(client: Any, name: str) -> tuple[int, float] | None:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return int(version.version), float(version.tags.get(METRIC, "nan"))


def _history(client: Any, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags
    return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _version(client: Any, name: str, version: int) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise TrackingError(f"{name} has no version {version}") from None


def _move_champion(client: Any, name: str, version: int, history: list[int]) -> None:
    """Point `champion` at version and record it; if recording fails, put the alias back."""
    before = _champion(client, name)
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
) -> Decision:
    """Apply the promotion rule to a version; record the decision on it; move `champion`."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        with promotion_lock(client, name):
            candidate = _version(client, name, version)
            if METRIC not in candidate.tags:
                raise TrackingError(f"{name} v{version} has no {METRIC} tag to judge it by")
            current = _champion(client, name)
            if current and current[0] == version:
                return Decision(False, f"v{version} is already champion", *current)
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
    except MlflowException as exc:
        raise TrackingError(f"promoting {name} v{version}: {first_line(exc)}") from None


def rollback(uri: str, name: str) -> tuple[int, int]:
    """Give `champion` back to the previous champion; returns (from, to)."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        with promotion_lock(client, name):
            current = _champion(client, name)
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
    except MlflowException as exc:
        raise TrackingError(f"rolling back {name}: {first_line(exc)}") from None


@dataclass(frozen=True)
class VersionRow:
    """One line of `fmnist models`."""

    version: int
    aliases: list[str]
    test_accuracy: str
    optimizer: str
    created: str


def list_versions(uri: str, name: str) -> list[VersionRow]:
    """Every version of the registered model, newest first, with its aliases."""
    import datetime as dt

    client = _client(uri)
    rows = []
    for found in client.search_model_versions(f"name = '{name}'"):
        version = client.get_model_version(name, found.version)  # search omits aliases
        created = dt.datetime.fromtimestamp(version.creation_timestamp / 1000, tz=dt.UTC)
        rows.append(
            VersionRow(
                int(version.version),
                sorted(version.aliases),
                version.tags.get(METRIC, ""),
                version.tags.get("optimizer", ""),
                created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
        )
    return sorted(rows, key=lambda r: -r.version)


def champion_version(uri: str, name: str) -> int:
    """The version holding `champion`; a clear error when there is none."""
    found = _champion(_client(uri), name)
    if found is None:
        raise TrackingError(f"{name} has no @{CHAMPION} yet (run `make run`, or `fmnist promote`)")
    return found[0]
