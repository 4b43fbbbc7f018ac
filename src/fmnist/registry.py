"""The MLflow model registry: versions and aliases (never stages); moving `champion` is
fmnist.champion.

Registering is idempotent per run (a run's second registration returns its first version),
all or nothing (a failure deletes the new version and puts `challenger` back), and what is
reported afterwards is read back from the registry, never assumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fmnist.core.promotion import (
    CHALLENGER,
    CHAMPION,
    METRIC,
)
from fmnist.errors import TrackingError, first_line
from fmnist.imports import load_mlflow


def client_for(uri: str) -> Any:
    """A client of the store at uri, opened (fmnist.mlflow_store.open_store)."""
    load_mlflow()  # the first import of the process is a long-lived one
    from mlflow import MlflowClient

    from fmnist.mlflow_store import open_store

    open_store(uri)
    return MlflowClient(uri)


def not_found(exc: Exception) -> bool:
    """MLflow's 'no such model / alias' (the only error that means 'none')."""
    code = getattr(exc, "error_code", "")
    alias_missing = (
        code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and ("not found" in str(exc))
    )
    return code == "RESOURCE_DOES_NOT_EXIST" or alias_missing


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version holding alias; None only when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise TrackingError(f"{name}: looking up @{alias}: {first_line(exc)}") from None


def champion_of(client: Any, name: str) -> tuple[int, float] | None:
    found = alias_version(client, name, CHAMPION)
    return None if found is None else (int(found.version), float(found.tags.get(METRIC, "nan")))


def version_of_run(client: Any, name: str, run_id: str) -> Any | None:
    """The version already registered from run_id, if any (the oldest)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException as exc:
        if not_found(exc):
            return None
        raise
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(
    uri: str,
    name: str,
    model_uri: str,
    run_id: str,
    *,
    description: str,
    tags: Mapping[str, str],
) -> tuple[Any, bool, Any | None]:
    """Run run_id's model as a version of `name` (alias `challenger`, description, tags);
    returns (version, created, the version that held `challenger` before). A run registered
    before gets its version back, unchanged."""
    mlflow = load_mlflow()
    from mlflow.exceptions import MlflowException

    from fmnist.console import library_prints

    client = client_for(uri)
    try:
        existing = version_of_run(client, name, run_id)
        if existing is not None:
            return existing, False, None
        before = alias_version(client, name, CHALLENGER)
        with library_prints():  # its two progress lines, only with --verbose
            version = mlflow.register_model(model_uri, name, tags=dict(tags))
    except MlflowException as exc:
        raise TrackingError(f"registering {model_uri} as {name!r}: {first_line(exc)}") from None
    try:
        client.update_model_version(name, version.version, description=description)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        return client.get_model_version(name, version.version), True, before
    except BaseException as exc:
        left = undo_registration(uri, name, int(version.version), before)
        if isinstance(exc, MlflowException):
            cause = first_line(exc)
            raise TrackingError(f"registering {name} v{version.version}: {cause}; {left}") from None
        raise


def describe_version(uri: str, name: str, version: int, description: str) -> None:
    """Set a version's description (markdown: MLflow's UI renders it)."""
    from mlflow.exceptions import MlflowException

    try:
        client_for(uri).update_model_version(name, str(version), description=description)
    except MlflowException as exc:
        raise TrackingError(f"{name} v{version}: describing it: {first_line(exc)}") from None


def model_version(uri: str, name: str, version: int) -> Any:
    """A version as the registry holds it (description, tags, ...)."""
    from mlflow.exceptions import MlflowException

    try:
        return client_for(uri).get_model_version(name, str(version))
    except MlflowException as exc:
        raise TrackingError(f"{name} v{version}: reading it: {first_line(exc)}") from None


def undo_registration(uri: str, name: str, version: int, challenger_before: Any | None) -> str:
    """Delete a version registered by a step that then failed and give `challenger` back to
    the version that held it; returns what the registry is left as (one clause)."""
    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    try:
        champion = alias_version(client, name, CHAMPION)
        if champion is not None and int(champion.version) == version:
            return f"v{version} holds @{CHAMPION} already, so it was kept"
        client.delete_model_version(name, str(version))
        if challenger_before is not None:
            client.set_registered_model_alias(name, CHALLENGER, challenger_before.version)
    except (MlflowException, TrackingError) as exc:
        return (
            f"v{version} was left registered ({first_line(exc)}); the next `dvc repro` "
            "finds it (registration is per run) and applies the promotion rule again"
        )
    return "the registry is as it was before"


def registered_record(uri: str, name: str, version: int) -> dict[str, Any]:
    """A version as the registry holds it now: aliases and promotion decision read back."""
    from mlflow.exceptions import MlflowException

    try:
        found = client_for(uri).get_model_version(name, str(version))
    except MlflowException as exc:
        raise TrackingError(f"{name} v{version}: reading it back: {first_line(exc)}") from None
    aliases = sorted(found.aliases)
    return {
        "name": name,
        "version": int(found.version),
        "aliases": aliases,
        "promoted": CHAMPION in aliases,
        "promotion": found.tags.get("fmnist.promotion.reason", ""),
        "run_id": found.run_id,
        # the metrics the version was registered (and is judged) with, as its tags hold them
        **{k: float(found.tags[k]) for k in ("test_loss", METRIC) if k in found.tags},
    }


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

    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    try:
        found_versions = client.search_model_versions(f"name = '{name}'")
        versions = [client.get_model_version(name, v.version) for v in found_versions]
    except MlflowException as exc:
        raise TrackingError(f"listing {name}'s versions: {first_line(exc)}") from None
    rows = []
    for version in versions:  # (search omits aliases: each is read once more)
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
    found = champion_of(client_for(uri), name)
    if found is None:
        raise TrackingError(f"{name} has no @{CHAMPION} yet (run `make run`, or `fmnist promote`)")
    return found[0]
