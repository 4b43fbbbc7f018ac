"""The MLflow model registry: versions and aliases (never stages). Registering is idempotent
per run (a half-made version is completed), all or nothing (an undo deletes a new version and
gives `challenger` back); what is reported is read back from the registry, never assumed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from fmnist.process.errors import FmnistError, TrackingError, first_line
from fmnist.process.failures import Held
from fmnist.process.imports import load_mlflow
from fmnist.registry.promotion import CHALLENGER, CHAMPION, METRIC, Decision
from fmnist.tracking.mlflow_store import mlflow_errors, open_store


def client_for(uri: str) -> Any:
    """A client of the store at uri, opened (open_store imports mlflow the long-lived way)."""
    open_store(uri)
    from mlflow import MlflowClient

    return MlflowClient(uri)


def not_found(exc: Exception) -> bool:
    """MLflow's 'no such model / alias' (the only error that means 'none')."""
    code, text = getattr(exc, "error_code", ""), str(exc)
    alias_missing = code == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text
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
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


NEW, RESUMED, COMPLETE = "new", "resumed", "complete"  # Registration.state


@dataclass(frozen=True)
class Registration:
    """A run's version: NEW, RESUMED (a stopped registration taken up) or COMPLETE already."""

    version: Any
    state: str
    challenger_before: Any | None  # the version that held `challenger` (an undo gives it back)


def register_version(
    uri: str,
    name: str,
    model_uri: str,
    run_id: str,
    *,
    description: str,
    tags: Mapping[str, str],
    held: Held | None = None,
) -> Registration:
    """Run run_id's model as a version of `name` (alias `challenger`, description, tags).
    held: the caller's signals_held; its safe point is just before the version is created."""
    from fmnist.registry.card import PENDING

    client = client_for(uri)
    held = held or Held()
    with mlflow_errors(f"registering {model_uri} as {name!r}"):
        found = version_of_run(client, name, run_id)
        existing = None if found is None else client.get_model_version(name, found.version)
        # complete: its card records the promotion decision (a registration's last write)
        card, tags_now = ("", {}) if existing is None else (existing.description, existing.tags)
        if card and PENDING not in card and Decision.from_tags(dict(tags_now)):
            return Registration(existing, COMPLETE, None)
        before = alias_version(client, name, CHALLENGER)
    state = NEW if existing is None else RESUMED
    if existing is None:
        held.safe_point()  # the last point at which stopping leaves nothing to undo
        held.doing = f"the registration of a new version of {name}"
        existing = _create_version(uri, name, model_uri, run_id, tags, before)
    number = int(existing.version)
    held.doing = f"the registration of {name} v{number}"
    try:
        client.update_model_version(name, str(number), description=description)
        client.set_registered_model_alias(name, CHALLENGER, str(number))
        return Registration(client.get_model_version(name, str(number)), state, before)
    except BaseException as exc:
        left = undo_registration(uri, name, number, before, state, exc)
        raise_undone(exc, f"registering {name} v{number}: ", left)


def raise_undone(exc: BaseException, doing: str, left: str) -> NoReturn:
    """exc, saying what its undo left: a store's error as one line, a note on an interrupt."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException | FmnistError):
        raise TrackingError(f"{doing}{first_line(exc)}; {left}") from None
    if isinstance(exc, KeyboardInterrupt):
        exc.add_note(left)
    raise exc


def _create_version(
    uri: str, name: str, model_uri: str, run_id: str, tags: Mapping[str, str], before: Any
) -> Any:
    """mlflow.register_model; a failure after the version's row was made deletes it."""
    mlflow = load_mlflow()
    from mlflow.exceptions import MlflowException

    from fmnist.process.console import library_prints

    try:
        with library_prints():  # its two progress lines, only with --verbose
            return mlflow.register_model(model_uri, name, tags=dict(tags))
    except MlflowException as exc:
        try:
            made = version_of_run(client_for(uri), name, run_id)
        except MlflowException:
            made = None  # (if one was made, the next register completes it)
        left = "nothing was registered"
        if made is not None:
            left = undo_registration(uri, name, int(made.version), before)
        raise_undone(exc, f"registering {model_uri} as {name!r}: ", left)


def describe_version(uri: str, name: str, version: int, description: str) -> None:
    """Set a version's description (markdown: MLflow's UI renders it)."""
    with mlflow_errors(f"{name} v{version}: describing it"):
        client_for(uri).update_model_version(name, str(version), description=description)


def model_version(uri: str, name: str, version: int) -> Any:
    """A version as the registry holds it (description, tags, ...)."""
    with mlflow_errors(f"{name} v{version}: reading it"):
        return client_for(uri).get_model_version(name, str(version))


def undo_registration(
    uri: str,
    name: str,
    version: int,
    challenger_before: Any | None,
    state: str = NEW,
    cause: BaseException | None = None,
) -> str:
    """Delete a NEW version and give `challenger` back; returns what is left (one clause).
    A RESUMED version, and any after a second signal (stop at once), stay to be completed."""
    from mlflow.exceptions import MlflowException

    then = "the next `fmnist register` completes it"
    if state != NEW or getattr(cause, "at_once", False):
        return f"{name} v{version} is left half-made; {then}"
    try:
        client = client_for(uri)
        champion = alias_version(client, name, CHAMPION)
        if champion is not None and int(champion.version) == version:
            return f"{name} v{version} holds @{CHAMPION} already, so it was kept; {then}"
        challenger = alias_version(client, name, CHALLENGER)
        client.delete_model_version(name, str(version))  # (its aliases go with it)
    except (MlflowException, TrackingError) as exc:
        return f"{name} v{version} is left half-made ({first_line(exc)}); {then}"
    took_it = challenger is not None and int(challenger.version) == version
    # Only where this version had taken it: a registration since then keeps its own.
    back = None if challenger_before is None or not took_it else str(challenger_before.version)
    try:
        if back is not None:
            client.set_registered_model_alias(name, CHALLENGER, back)
    except MlflowException as exc:
        why = first_line(exc)
        return f"{name} v{version} was deleted, but @{CHALLENGER} is not back on v{back} ({why})"
    return f"{name} v{version} was deleted: the registry is as it was before"


def registered_record(uri: str, name: str, version: int) -> dict[str, Any]:
    """A version as the registry holds it now: aliases and promotion decision read back."""
    with mlflow_errors(f"{name} v{version}: reading it back"):
        found = client_for(uri).get_model_version(name, str(version))
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
    import time

    client = client_for(uri)
    with mlflow_errors(f"listing {name}'s versions"):
        found = client.search_model_versions(f"name = '{name}'")
        # (search omits aliases: each is read once more)
        versions = [client.get_model_version(name, v.version) for v in found]
    return [
        VersionRow(
            int(v.version),
            sorted(v.aliases),
            v.tags.get(METRIC, ""),
            v.tags.get("optimizer", ""),
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v.creation_timestamp / 1000)),
        )
        for v in sorted(versions, key=lambda v: -int(v.version))
    ]


def champion_version(uri: str, name: str) -> int:
    """The version holding `champion`; a clear error when there is none."""
    found = champion_of(client_for(uri), name)
    if found is None:
        raise TrackingError(f"{name} has no @{CHAMPION} yet (run `make run`, or `fmnist promote`)")
    return found[0]
