"""A registry-wide mutex for promotions, that knows its holder.

The lock is a marker registered model only one process can create (the store's unique name
is the arbiter, on sqlite and on a tracking server alike). It records its holder (host, pid,
process start time) and since when. A lock whose holder process is gone (killed mid-
promotion) is broken at once; a live holder is waited for, with a progress line, up to a
bounded time; any other store error stops at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from fmnist.errors import TrackingError, first_line

LOCK_SUFFIX = ".promotion-lock"
HOLDER_TAG = "fmnist.lock.holder"  # lifecycle.owner(): host:pid:start time
SINCE_TAG = "fmnist.lock.since"
STARTED_TAG = "fmnist.lock.started"  # unix time, to tell a lock's age
TIMEOUT = 60.0
PROGRESS_EVERY = 5.0
# A promotion takes seconds; a lock older than this was left by a holder that cannot be
# checked (another host) and is broken too.
STALE_AFTER = 600.0


def _already_exists(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_ALREADY_EXISTS"


def _holder(client: Any, lock: str) -> tuple[str, str, float] | None:
    """(holder, since, age in seconds) of the lock, None when it is gone meanwhile."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lock).tags
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    try:
        age = time.time() - float(tags.get(STARTED_TAG, "nan"))
    except ValueError:
        age = float("nan")
    return tags.get(HOLDER_TAG, "unknown"), tags.get(SINCE_TAG, "?"), age


def _stale(holder: str, age: float) -> str | None:
    """Why a lock can be broken (its holder is gone, or it is far too old), or None."""
    from fmnist.lifecycle import owner_gone

    if owner_gone(holder):
        return "gone"
    if age > STALE_AFTER:  # NaN (no age) compares False: never broken for that
        return f"held for {age / 60:.0f} min"
    return None


def _acquire(client: Any, name: str, timeout: float, echo: Callable[[str], None]) -> str:
    from mlflow.exceptions import MlflowException

    from fmnist.lifecycle import owner

    lock = f"{name}{LOCK_SUFFIX}"
    deadline = time.monotonic() + timeout
    next_progress = time.monotonic() + PROGRESS_EVERY
    tags = {
        HOLDER_TAG: owner(),
        SINCE_TAG: time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        STARTED_TAG: f"{time.time():.0f}",
    }
    description = f"held while a promotion of {name} runs (holder in its tags)"
    while True:
        try:
            client.create_registered_model(lock, tags=tags, description=description)
            return lock
        except MlflowException as exc:
            if not _already_exists(exc):
                raise
        held = _holder(client, lock)
        if held is None:
            continue  # released meanwhile: try again at once
        holder, since, age = held
        why = _stale(holder, age)
        again = _holder(client, lock)  # still that holder's, just before breaking it
        if why and again is not None and again[:2] == held[:2]:
            echo(f"{name}: breaking a stale promotion lock of {holder} (since {since}): {why}")
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(lock)
            continue
        now = time.monotonic()
        if now > deadline:
            raise TrackingError(
                f"{name}: another promotion ({holder}, since {since}) still holds "
                f"{lock!r} after {timeout:.0f} s; try again when it is done"
            )
        if now >= next_progress:
            echo(f"{name}: waiting for the promotion of {holder} (since {since}) to finish")
            next_progress = now + PROGRESS_EVERY
        time.sleep(0.2)


@contextlib.contextmanager
def promotion_lock(
    client: Any,
    name: str,
    timeout: float = TIMEOUT,
    echo: Callable[[str], None] = print,
) -> Iterator[None]:
    """Promotions of `name` one at a time."""
    from mlflow.exceptions import MlflowException

    try:
        lock = _acquire(client, name, timeout, echo)
    except MlflowException as exc:
        raise TrackingError(f"{name}: taking the promotion lock: {first_line(exc)}") from None
    try:
        yield
    finally:
        try:
            client.delete_registered_model(lock)
        except MlflowException as exc:  # what was promoted stays; the next one breaks it
            cause = first_line(exc)
            echo(f"{name}: could not release {lock!r} ({cause}); the next promotion breaks it")
