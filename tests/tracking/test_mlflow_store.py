"""The store's one-line failures, redaction, schemes and deadlines (tracking.mlflow_store)."""

from __future__ import annotations

import http.server
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from fmnist.process.errors import TrackingError
from fmnist.tracking.mlflow_store import (
    TIMEOUT_ENV,
    check_reachable,
    check_scheme,
    deadline,
    health_url,
    redact,
    store_error_line,
)


def test_a_locked_store_names_the_fix() -> None:
    line = store_error_line(sqlite3.OperationalError("database is locked"), "sqlite:////x/m.db")
    assert line is not None and "\n" not in line
    assert line.startswith("the sqlite MLflow store /x/m.db is locked by another writer")
    assert "tracking server" in line and "MLFLOW_TRACKING_URI=http://" in line
    assert store_error_line(sqlite3.OperationalError("no such table: runs")) is None


@pytest.mark.parametrize(
    ("sqlite_says", "line_says"),
    [
        ("attempt to write a readonly database", "is read-only"),
        ("file is not a database", "is not an MLflow sqlite store (file is not a database)"),
        ("database disk image is malformed", "is damaged"),
        ("database or disk is full", "the disk is full"),
        ("unable to open database file", "cannot be opened"),
    ],
)
def test_what_sqlite_said_is_named_even_when_wrapped(sqlite_says: str, line_says: str) -> None:
    try:
        try:
            raise sqlite3.OperationalError(sqlite_says)
        except sqlite3.OperationalError as inner:
            raise RuntimeError("(raised as a result of Query-invoked autoflush)") from inner
    except RuntimeError as outer:
        line = store_error_line(outer, "sqlite:////data/mlflow.db")
    assert line is not None and "\n" not in line
    assert line.startswith("the sqlite MLflow store /data/mlflow.db ") and line_says in line


def test_passwords_are_redacted_wherever_they_stand() -> None:
    text = "db postgresql+psycopg://fm:s3cr%40t@127.0.0.1:5432/mlflow and http://u:p@h/x"
    assert (
        redact(text) == "db postgresql+psycopg://fm:***@127.0.0.1:5432/mlflow and http://u:***@h/x"
    )
    assert redact("sqlite:////a/b.db") == "sqlite:////a/b.db"


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///x.db",
        "http://127.0.0.1:5000",
        "postgresql+psycopg://a@b/c",
        "/tmp/mlruns",
        "file:///tmp/mlruns",
    ],
)
def test_supported_schemes_pass(uri: str) -> None:
    check_scheme(uri)


def test_an_unsupported_scheme_is_one_line() -> None:
    with pytest.raises(
        TrackingError,
        match=r"^tracking URI 'ftp://u:\*\*\*@h/x': unsupported scheme 'ftp' \(use sqlite:///",
    ):
        check_scheme("ftp://u:pw@h/x")


def test_the_deadline_is_configurable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert deadline() == 20.0
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert deadline() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(TrackingError, match=TIMEOUT_ENV):
            deadline()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_a_server_that_never_answers_fails_within_the_deadline(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "1.5")
    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"did not answer within 1\.5 s; start it"):
        check_reachable(f"http://127.0.0.1:{silent_server}")
    assert time.monotonic() - started < 10  # a bound on the wait, not a timing test


def test_a_refused_port_fails_at_once_naming_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(
        TrackingError,
        match=rf"^MLflow tracking server http://127\.0\.0\.1:{port} cannot be reached "
        r"\(Connection refused\); start it",
    ):
        check_reachable(f"http://127.0.0.1:{port}")


def test_the_health_url_keeps_the_path_and_drops_the_credentials() -> None:
    assert health_url("https://me:s3cr@t@mlflow.example:8443/prefix/") == (
        "https://mlflow.example:8443/prefix/health"
    )
    assert health_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000/health"


def test_a_uri_whose_password_breaks_the_url_is_one_line_without_it() -> None:
    with pytest.raises(TrackingError, match=r"^the MLflow tracking URI is not a URL") as caught:
        check_reachable("http://me:se/cr?et@127.0.0.1:5000")
    assert "cr" not in str(caught.value) and "et@" not in str(caught.value)


@pytest.mark.parametrize("userinfo", ["", "me:s3cret@", "me@"])
def test_a_healthy_server_passes(userinfo: str) -> None:
    """With or without a user and password in the URI (MLflow's client sends them as basic
    auth; its health endpoint needs none)."""
    asked: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(f"{self.path} {self.headers.get('Authorization')}")
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        check_reachable(f"http://{userinfo}127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/health None"]
