"""Moving `champion` under a registry-wide promotion lock; a failure moves no alias. A contender
takes a ticket, a version of `<name>.promotion-lock` (numbered atomically, never reused); the
lowest live ticket holds the lock; each removal names one ticket (its own, or a stale one)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from fmnist.process.errors import TrackingError, first_line
from fmnist.registry.promotion import CHAMPION, METRIC, Decision, decide_promotion
from fmnist.registry.versions import champion_of, client_for, not_found
from fmnist.tracking.lifecycle import owner, owner_gone
from fmnist.tracking.mlflow_store import mlflow_errors

# A ticket's source: a URI both a sqlite store and a tracking server accept (a server refuses
# local paths outside a run's artifacts, and relative ones); it points at nothing.
TICKET_SCHEME = "fmnist-lock:/"
HOLDER_TAG = "fmnist.lock.holder"  # lifecycle.owner(): host:pid:start time
SINCE_TAG = "fmnist.lock.since"
STARTED_TAG = "fmnist.lock.started"  # unix time, to tell a ticket's age
TIMEOUT = 60.0
PROGRESS_EVERY = 5.0
POLL_EVERY = 0.2
# A promotion takes seconds; a ticket older than this was left by a holder that cannot be
# checked (another host) and is broken too.
STALE_AFTER = 600.0
HISTORY_TAG = "fmnist.champion_history"  # versions that held `champion`, oldest first
_PRINT = partial(print, flush=True)  # the wait's lines, one every few seconds


@dataclass(frozen=True)
class Ticket:
    """A contender's place in line: its version of the lock, holder, since when, age in s."""

    version: int
    holder: str
    since: str
    age: float


def lock_name(name: str) -> str:
    return f"{name}.promotion-lock"


def tickets(client: Any, name: str) -> list[Ticket]:
    """The live tickets for name's promotion lock, its holder first; [] when it is free."""
    line = []
    for v in client.search_model_versions(f"name = '{lock_name(name)}'"):
        started = v.tags.get(STARTED_TAG, "")
        age = time.time() - float(started) if started.isdigit() else float("nan")
        holder, since = v.tags.get(HOLDER_TAG, "unknown"), v.tags.get(SINCE_TAG, "?")
        line.append(Ticket(int(v.version), holder, since, age))
    return sorted(line, key=lambda t: t.version)


def _take_ticket(client: Any, name: str) -> int:
    """A new ticket in line, numbered after every ticket taken before it."""
    from mlflow.exceptions import MlflowException

    lock = lock_name(name)
    try:
        client.create_registered_model(
            lock, description=f"promotions of {name} in line: its lowest version holds the lock"
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {
        HOLDER_TAG: owner(),
        SINCE_TAG: time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        STARTED_TAG: f"{time.time():.0f}",
    }
    ticket = client.create_model_version(
        lock, f"{TICKET_SCHEME}{lock}", tags=tags, await_creation_for=0
    )
    return int(ticket.version)


def _remove(client: Any, name: str, version: int) -> bool:
    """Delete that one ticket; False if it was gone already."""
    from mlflow.exceptions import MlflowException

    try:
        client.delete_model_version(lock_name(name), str(version))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _to_break(ahead: list[Ticket]) -> list[tuple[Ticket, str]]:
    """The stale tickets ahead and why; only those behind this host's nearest live contender
    ahead (it breaks those in front of it), so each has one breaker. NaN age: never too old."""
    host, found = socket.gethostname(), []
    for ticket in reversed(ahead):
        if owner_gone(ticket.holder):
            found.append((ticket, "gone"))
        elif ticket.age > STALE_AFTER:
            found.append((ticket, f"held for {ticket.age / 60:.0f} min"))
        elif ticket.holder.partition(":")[0] == host:
            break
    return found


def _wait_turn(
    client: Any,
    name: str,
    mine: int,
    timeout: float,
    echo: Callable[[str], None],
    checkpoint: Callable[[], None],
) -> None:
    """Return once no live ticket is ahead of mine, breaking stale ones."""
    deadline = time.monotonic() + timeout
    next_progress = time.monotonic() + PROGRESS_EVERY
    while True:
        line = tickets(client, name)
        if all(t.version != mine for t in line):  # broken as stale, or the lock model deleted
            raise TrackingError(
                f"{name}: this promotion's place in line ({lock_name(name)!r} v{mine}) was "
                "removed by another process; try again"
            )
        ahead = [t for t in line if t.version < mine]
        for ticket, why in _to_break(ahead):
            if _remove(client, name, ticket.version):  # False: another broke it first
                held = f"{ticket.holder} (since {ticket.since})"
                echo(f"{name}: breaking a stale promotion lock of {held}: {why}")
            ahead.remove(ticket)
        if not ahead:
            return
        holder, since, now = ahead[0].holder, ahead[0].since, time.monotonic()
        if now > deadline:
            raise TrackingError(
                f"{name}: another promotion ({holder}, since {since}) still holds "
                f"{lock_name(name)!r} after {timeout:.0f} s; try again when it is done"
            )
        if now >= next_progress:
            echo(f"{name}: waiting for the promotion of {holder} (since {since}) to finish")
            next_progress = now + PROGRESS_EVERY
        checkpoint()
        time.sleep(POLL_EVERY)


@contextlib.contextmanager
def promotion_lock(
    client: Any,
    name: str,
    timeout: float = TIMEOUT,
    echo: Callable[[str], None] = _PRINT,
    checkpoint: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """Promotions of `name` one at a time; checkpoint: a safe point to stop at while waiting."""
    with mlflow_errors(f"{name}: taking the promotion lock"):
        from mlflow.exceptions import MlflowException

        mine = _take_ticket(client, name)
        try:
            _wait_turn(client, name, mine, timeout, echo, checkpoint)
        except BaseException:  # timeout, Ctrl-C/SIGTERM, a store error: out of the line
            with contextlib.suppress(MlflowException):  # the first failure is the one to say
                _remove(client, name, mine)
            raise
    try:
        yield
    finally:
        lock = f"{lock_name(name)!r} v{mine}"
        try:
            if not _remove(client, name, mine):
                echo(f"{name}: {lock} was gone already (another promotion broke it as stale)")
        except MlflowException as exc:  # what was promoted stays; the next one breaks the ticket
            echo(
                f"{name}: could not release {lock} ({first_line(exc)}); the next promotion "
                "breaks it once this process has ended"
            )


def _history(client: Any, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags
    return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


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
    checkpoint: Callable[[], None] = lambda: None,
) -> Decision:
    """Apply the promotion rule to a version, record the decision on it, move `champion`.
    checkpoint: a safe point to stop at while the lock is waited for."""
    client = client_for(uri)  # opens the store: MLflow's import is a long-lived one
    from mlflow.exceptions import MlflowException

    with (
        mlflow_errors(f"promoting {name} v{version}"),
        promotion_lock(client, name, checkpoint=checkpoint),
    ):
        try:
            candidate = client.get_model_version(name, str(version))
        except MlflowException as exc:
            if not_found(exc):
                raise TrackingError(f"{name} has no version {version}") from None
            raise
        if METRIC not in candidate.tags:
            raise TrackingError(f"{name} v{version} has no {METRIC} tag to judge it by")
        current = champion_of(client, name)
        if current is not None and current[0] == version:  # nothing to move or record
            reason = f"v{version} is already champion"
            return Decision(True, reason, *current, already_champion=True)
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
        # the version that held it before the current one and still exists
        previous = next((v for v in reversed(history) if v != current[0] and v in existing), None)
        if previous is None:
            raise TrackingError(f"{name}: no previous champion to roll back to")
        kept = history[: len(history) - history[::-1].index(previous)]
        _move_champion(client, name, previous, kept)
        client.set_model_version_tag(name, str(current[0]), "fmnist.rolled_back", "true")
        return current[0], previous
