"""Following @champion (fmnist.serving.champion_watch): the polling logic with scripted look-ups and
loads, then the real look-up against tracking servers that hang and a real sqlite store whose
champion cannot be loaded (no TensorFlow). Real models and the real server under a stream of
requests: tests/integration/test_champion_watch.py."""

from __future__ import annotations

import http.server
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fmnist.process.errors import TrackingError
from fmnist.serving.champion_watch import (
    CAUSE_LIMIT,
    ChampionWatcher,
    cause_of,
    kept_line,
    load_warm,
    look_up_champion,
    watch_champion,
)
from fmnist.serving.loading import ModelHolder, ServedModel
from fmnist.tracking.mlflow_store import TIMEOUT_ENV

NAME = "fashion-mnist"
LOGGER = "uvicorn.error"


def served(version: int) -> ServedModel:
    return ServedModel(NAME, version, model=f"model v{version}")


def script(*results: int | Exception | None) -> Callable[[], int | None]:
    """A look-up answering results in turn (an exception is raised), the last one forever."""
    answers = list(results)

    def look_up() -> int | None:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return look_up


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def wait_until(done: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


# ---------------------------------------------------------------- the logic, scripted


def test_a_moved_alias_is_loaded_before_it_is_swapped_in_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = ModelHolder(served(1))
    serving_while_loading = []

    def load(version: int) -> ServedModel:
        serving_while_loading.append(holder.current.version)
        return served(version)

    watcher = ChampionWatcher(holder, script(1, 1, 2), load, poll_seconds=10)
    watcher.poll()
    watcher.poll()
    assert holder.current.version == 1 and lines(caplog) == []  # an alias that stays: nothing
    watcher.poll()
    watcher.poll()
    assert holder.current.version == 2
    assert serving_while_loading == [1]  # loaded once, while v1 still answered
    ((level, line),) = lines(caplog)
    assert level == "INFO" and line.startswith(f"{NAME} @champion: v1 -> v2 (loaded and warmed")


def test_a_failed_load_keeps_the_old_model_says_why_once_and_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = ModelHolder(served(1))
    attempts = []

    def load(version: int) -> ServedModel:
        attempts.append(version)
        if len(attempts) < 3:
            raise OSError("artifacts/model.keras: no such file")
        return served(version)

    watcher = ChampionWatcher(holder, script(2), load, poll_seconds=10)
    watcher.poll()
    watcher.poll()
    assert holder.current.version == 1 and attempts == [2, 2]
    why = "v2 could not be loaded (OSError: artifacts/model.keras: no such file)"
    assert lines(caplog) == [("WARNING", kept_line(NAME, 1, why, 10))]
    assert "still serving v1, looking again every 10 s" in lines(caplog)[0][1]
    watcher.poll()
    assert holder.current.version == 2 and attempts == [2, 2, 2]
    assert lines(caplog)[1][1].startswith(f"{NAME} @champion: v1 -> v2")


def test_an_unreadable_registry_is_said_once_and_its_end_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = TrackingError("MLflow tracking server http://mlflow:5000 cannot be reached")
    holder = ModelHolder(served(3))
    watcher = ChampionWatcher(holder, script(down, down, down, 3), pytest.fail, poll_seconds=1)
    for _ in range(5):
        watcher.poll()
    assert holder.current.version == 3
    assert [level for level, _ in lines(caplog)] == ["WARNING", "INFO"]
    assert "cannot read the registry (TrackingError: MLflow tracking server" in lines(caplog)[0][1]
    assert lines(caplog)[1][1] == f"{NAME} @champion: names v3 again, the version being served"


def test_a_deleted_alias_keeps_the_model_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    holder = ModelHolder(served(4))
    watcher = ChampionWatcher(holder, script(None), pytest.fail, poll_seconds=10)
    for _ in range(3):
        watcher.poll()
    assert holder.current.version == 4
    ((level, line),) = lines(caplog)
    assert level == "WARNING" and "the alias is gone" in line and "still serving v4" in line


# ---------------------------------------------------------------- the thread


def test_the_thread_switches_and_stops_at_once() -> None:
    holder = ModelHolder(served(1))
    watcher = ChampionWatcher(holder, script(2), served, poll_seconds=0.02)
    watcher.start()
    wait_until(lambda: holder.current.version == 2)
    assert watcher.stop(timeout=5)


def test_a_bug_in_a_poll_is_logged_and_polling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def look_up() -> int:
        calls.append(1)
        raise TrackingError("down")

    def describe(exc: Exception) -> str:
        raise RuntimeError("a bug in describing it")

    holder = ModelHolder(served(1))
    watcher = ChampionWatcher(holder, look_up, pytest.fail, poll_seconds=0.01, describe=describe)
    watcher.start()
    wait_until(lambda: len(calls) >= 3)  # polling went on
    assert watcher.stop(timeout=5) and holder.current.version == 1
    assert any(r.exc_info and "a bug in describing" in str(r.exc_info[1]) for r in caplog.records)


def test_poll_seconds_0_follows_nothing() -> None:
    before = threading.active_count()
    with watch_champion(ModelHolder(served(1)), "sqlite:////nowhere/mlflow.db", 0) as watcher:
        assert watcher is None and threading.active_count() == before


# ---------------------------------------------------------------- real stores


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.slow  # waits out a server that never answers
def test_a_hanging_tracking_server_is_one_line_within_the_deadline(
    silent_server: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "0.5")
    holder = ModelHolder(served(1))
    with watch_champion(holder, f"http://127.0.0.1:{silent_server}", 0.05):
        wait_until(lambda: lines(caplog))
        time.sleep(1)  # more failed looks
    ((level, line),) = lines(caplog)  # said once, however many looks failed
    assert level == "WARNING" and "did not answer within 0.5 s" in line
    assert "still serving v1" in line
    assert holder.current.version == 1


def test_a_cause_is_one_short_line_without_passwords() -> None:
    cause = cause_of(OSError("http://fmnist:s3cret@mlflow:5000 " + "x" * 900 + "\nmore"))
    assert cause.startswith("OSError: http://fmnist:***@mlflow:5000 xxx")
    assert cause.endswith("xxx...") and len(cause) == CAUSE_LIMIT


@pytest.mark.slow  # waits out a server that never answers
def test_the_server_stops_while_a_look_up_hangs(
    silent_server: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "60")  # the look-up outlasts the server
    with watch_champion(ModelHolder(served(1)), f"http://127.0.0.1:{silent_server}", 0.01):
        time.sleep(0.3)  # the first look is under way
        started = time.monotonic()
    assert time.monotonic() - started < 10  # STOP_WAIT (2 s), not the deadline (60 s)
    said = "stopped following @champion with a look at the registry unanswered"  # left behind
    assert lines(caplog)[-1][1] == said


@pytest.fixture
def stalling_api() -> Iterator[str]:
    """An MLflow server that is healthy but never answers an API request."""
    stall = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                stall.wait(30)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stall.set()
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # waits out a server that never answers
def test_a_healthy_server_whose_api_hangs_is_bounded_by_mlflows_timeout(
    stalling_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What fmnist.tracking.mlflow_store.bound_http_waits sets for every command, shortened.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(TrackingError) as raised:
        look_up_champion(stalling_api, NAME)
    assert time.monotonic() - started < 20  # a bound on the wait, not a timing test
    assert "timed out" in cause_of(raised.value, stalling_api).lower()


@pytest.fixture
def unloadable_champion(tracking_uri: str, tmp_path: Path) -> str:
    """A sqlite store whose @champion, v1, points at artifacts that are not there."""
    from mlflow import MlflowClient

    from fmnist.tracking.mlflow_store import open_store

    open_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=str(tmp_path / "gone"))
    client.set_registered_model_alias(NAME, "champion", "1")
    return tracking_uri


def test_a_real_champion_that_cannot_load_leaves_nothing_and_the_old_model_serving(
    unloadable_champion: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert look_up_champion(unloadable_champion, NAME) == 1
    workdir = tmp_path / "loaded"
    with pytest.raises(TrackingError) as raised:
        load_warm(unloadable_champion, NAME, 1, workdir)
    assert cause_of(raised.value).startswith('models:/fashion-mnist/1: Could not find an "MLmodel"')
    assert not (workdir / "v1").exists()
    assert not any(str(workdir) in entry for entry in sys.path)

    holder = ModelHolder(served(7))
    with watch_champion(holder, unloadable_champion, 0.05):
        wait_until(lambda: lines(caplog))
        time.sleep(0.5)  # more failed loads
    assert holder.current.version == 7
    ((level, line),) = lines(caplog)
    assert level == "WARNING" and line.startswith(f"{NAME} @champion: v1 could not be loaded (")
    assert 'Could not find an "MLmodel"' in line and "still serving v7" in line

    from mlflow import MlflowClient

    MlflowClient(unloadable_champion).delete_registered_model_alias(NAME, "champion")
    assert look_up_champion(unloadable_champion, NAME) is None  # gone
