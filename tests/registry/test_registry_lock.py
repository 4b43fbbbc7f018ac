"""The promotion lock against a real store: stale tickets broken at once, live ones waited for,
each removal of one ticket only, and a contender that gives up leaves none behind.
(tests/integration/test_promotion_lock_race.py races processes for it through a server.)"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from fmnist.process.errors import TrackingError
from fmnist.registry import champion as registry_lock
from fmnist.registry.champion import (
    HOLDER_TAG,
    SINCE_TAG,
    STARTED_TAG,
    TICKET_SCHEME,
    lock_name,
    promotion_lock,
    tickets,
)
from fmnist.registry.versions import list_versions
from fmnist.tracking.lifecycle import owner

NAME = "fashion-mnist"
LOCK = lock_name(NAME)


def _ticket_of(client: MlflowClient, holder: str) -> int:
    """A ticket in line for the lock, as another process's promotion takes one."""
    if not client.search_registered_models(f"name = '{LOCK}'"):
        client.create_registered_model(LOCK)
    tags = {HOLDER_TAG: holder, SINCE_TAG: "earlier", STARTED_TAG: f"{time.time():.0f}"}
    return int(client.create_model_version(LOCK, f"{TICKET_SCHEME}{LOCK}", tags=tags).version)


def _dead_process() -> str:
    """The owner() of a process that has ended."""
    return subprocess.run(
        [sys.executable, "-c", "from fmnist.tracking.lifecycle import owner; print(owner())"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip


def test_a_lock_whose_holder_died_is_broken_at_once(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    dead = _dead_process()
    _ticket_of(client, dead)
    lines: list[str] = []
    started = time.monotonic()
    with promotion_lock(client, NAME, timeout=30, echo=lines.append):
        assert [t.holder for t in tickets(client, NAME)] == [owner()]
    assert time.monotonic() - started < 10  # not the 30 s timeout
    assert lines == [f"{NAME}: breaking a stale promotion lock of {dead} (since earlier): gone"]
    assert tickets(client, NAME) == []  # released
    assert list_versions(tracking_uri, NAME) == []  # the lock's tickets are not the model's


def test_a_dead_holder_is_broken_by_the_first_live_contender_behind_it(
    tracking_uri: str,
) -> None:
    """Behind a live contender of this host, a dead ticket is that contender's to break: one
    breaker, one line; this one waits (its removals name one ticket each: nothing else goes)."""
    client = MlflowClient(tracking_uri)
    gone = _dead_process()
    dead = _ticket_of(client, gone)
    live = _ticket_of(client, owner())  # this process: alive, of this host
    lines: list[str] = []
    with (
        pytest.raises(TrackingError, match=rf"another promotion \({gone}, since earlier\)"),
        promotion_lock(client, NAME, timeout=1, echo=lines.append),
    ):
        pass
    assert lines == []
    assert [t.version for t in tickets(client, NAME)] == [dead, live]  # ours is gone, no other


def test_releasing_a_ticket_broken_meanwhile_is_one_line_not_an_error(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    lines: list[str] = []
    with promotion_lock(client, NAME, echo=lines.append):
        (mine,) = tickets(client, NAME)
        client.delete_model_version(LOCK, str(mine.version))  # as a contender breaking it
        later = _ticket_of(client, owner())  # and taking the next ticket
    assert lines == [f"{NAME}: {LOCK!r} v{mine.version} was gone already (another promotion "
                     "broke it as stale)"]  # fmt: skip
    assert [t.version for t in tickets(client, NAME)] == [later]  # not removed by the release


def test_an_interrupted_waiter_leaves_no_ticket_behind(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(tracking_uri)
    holder = _ticket_of(client, owner())
    monkeypatch.setattr(registry_lock, "PROGRESS_EVERY", 0.0)

    def interrupt(line: str) -> None:  # Ctrl-C (or SIGTERM, fmnist's Interrupted) while waiting
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), promotion_lock(client, NAME, echo=interrupt):
        pass
    assert [t.version for t in tickets(client, NAME)] == [holder]


@pytest.mark.slow  # seconds of waiting
def test_a_live_holder_is_waited_for_with_progress_then_one_line(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            holder = owner().rsplit(":", 2)[0] + f":{sleeper.pid}:"
            import psutil

            holder += f"{psutil.Process(sleeper.pid).create_time():.2f}"
            _ticket_of(client, holder)
            lines: list[str] = []
            with (
                pytest.raises(
                    TrackingError,
                    match=rf"another promotion \({holder}, since earlier\) still holds",
                ),
                promotion_lock(client, NAME, timeout=6, echo=lines.append),
            ):
                pass
        finally:
            sleeper.kill()
    assert (
        lines
        and lines[0] == f"{NAME}: waiting for the promotion of {holder} (since earlier) to finish"
    )
    assert [t.holder for t in tickets(client, NAME)] == [holder]  # not ours to break; ours gone


def test_a_waiter_whose_ticket_was_removed_stops_in_one_line(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock model deleted meanwhile (an older fmnist's release does that): a waiter never
    takes the lock with its place in line gone."""
    client = MlflowClient(tracking_uri)
    _ticket_of(client, owner())  # a live holder: the waiter below waits
    monkeypatch.setattr(registry_lock, "PROGRESS_EVERY", 0.0)

    def lock_deleted(line: str) -> None:  # while it waits, the lock model goes
        client.delete_registered_model(LOCK)

    with (
        pytest.raises(TrackingError, match=r"place in line .* was removed by another process"),
        promotion_lock(client, NAME, timeout=30, echo=lock_deleted, checkpoint=lambda: None),
    ):
        pytest.fail("the lock was taken without a place in line")
