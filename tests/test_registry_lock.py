"""The promotion lock against a real store: stale locks broken at once, live ones waited for."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from fmnist.errors import TrackingError
from fmnist.lifecycle import owner
from fmnist.registry_lock import HOLDER_TAG, LOCK_SUFFIX, SINCE_TAG, promotion_lock

NAME = "fashion-mnist"
LOCK = f"{NAME}{LOCK_SUFFIX}"


def _held_by(client: MlflowClient, holder: str) -> None:
    client.create_registered_model(LOCK, tags={HOLDER_TAG: holder, SINCE_TAG: "earlier"})


def test_a_lock_whose_holder_died_is_broken_at_once(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    dead = subprocess.run(
        [sys.executable, "-c", "from fmnist.lifecycle import owner; print(owner())"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    _held_by(client, dead)
    lines: list[str] = []
    started = time.monotonic()
    with promotion_lock(client, NAME, timeout=30, echo=lines.append):
        assert client.get_registered_model(LOCK).tags[HOLDER_TAG] == owner()
    assert time.monotonic() - started < 10  # not the 30 s timeout
    assert lines == [f"{NAME}: breaking a stale promotion lock of {dead} (since earlier): gone"]
    assert [m.name for m in client.search_registered_models()] == []  # released


@pytest.mark.slow  # processes racing, seconds of waiting
def test_a_live_holder_is_waited_for_with_progress_then_one_line(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        try:
            holder = owner().rsplit(":", 2)[0] + f":{sleeper.pid}:"
            import psutil

            holder += f"{psutil.Process(sleeper.pid).create_time():.2f}"
            _held_by(client, holder)
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
    assert client.get_registered_model(LOCK).tags[HOLDER_TAG] == holder  # not ours to break
