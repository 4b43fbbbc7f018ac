"""A registry-wide mutex for promotions, that knows its holder. The lock is a registered model,
`<name>.promotion-lock`; a contender takes a ticket: a version of it, which the store numbers
atomically and never reuses, even once deleted (sqlite and server alike). The lowest live ticket
holds the lock. A ticket records its holder (host, pid, start time); every removal names one
ticket, so it removes no other holder's: a release one's own, a break one whose holder is gone
or that is far too old. A live holder is waited for up to a bound."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fmnist.process.errors import TrackingError, first_line
from fmnist.tracking.lifecycle import owner, owner_gone

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
    """The stale tickets ahead (holder gone, or far too old) and why: those behind the nearest
    live contender of this host ahead (it breaks those in front of it), so each has one
    breaker, one line. A ticket without an age (NaN) is never too old."""
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
    echo: Callable[[str], None] = print,
    checkpoint: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """Promotions of `name` one at a time; checkpoint is called between two looks while
    waiting (it may raise: a safe point to stop at)."""
    from fmnist.tracking.mlflow_store import mlflow_errors

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
