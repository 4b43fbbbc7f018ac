"""The MLflow store: which one a command uses, and opening it (once per process, checked,
created by one process at a time, runs of dead processes closed); redacted URIs, failures as
one line, and bounded waits (MLflow's own: minutes on a server that is down)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmnist.process.errors import FmnistError, SearchError, TrackingError, first_line
from fmnist.process.failures import LOCAL_CAUSES, STORAGE_EXIT
from fmnist.process.imports import load_mlflow
from fmnist.tracking.lifecycle import close_orphaned_runs

TIMEOUT_ENV = "FMNIST_TRACKING_TIMEOUT"
DEFAULT_TIMEOUT = 20.0
KNOWN_SCHEMES = {
    "", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql",
    "databricks", "databricks-uc", "uc",
}  # fmt: skip
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):[^\s/]*@")
_PARAM_PASSWORD = re.compile(r"(?i)\b(password=)[^&\s]+")


def redact(text: str) -> str:
    """text without passwords: `scheme://user:***@host` and `password=***` (query strings)."""
    return _PARAM_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\g<head>:***@", text))


def deadline() -> float:
    """Seconds a tracking server gets to answer (FMNIST_TRACKING_TIMEOUT, default 20)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise TrackingError(f"{TIMEOUT_ENV}={raw!r}: not a number of seconds") from None
    if not value > 0:
        raise TrackingError(f"{TIMEOUT_ENV}={raw!r}: must be more than 0 seconds")
    return value


def check_scheme(uri: str) -> None:
    """A tracking URI MLflow can open, or one line saying which forms work."""
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0].lower()
    if len(scheme) > 1 and scheme not in KNOWN_SCHEMES:  # one letter: a Windows drive, a path
        raise TrackingError(
            f"tracking URI {redact(uri)!r}: unsupported scheme {scheme!r} (use "
            "sqlite:///path/mlflow.db, http(s)://host:port or postgresql://...)"
        )


def bound_http_waits() -> None:
    """MLflow's HTTP client waits the deadline for a byte and tries 3 times, 1-2 s apart, so a
    server that dies mid-run stops the command within about a minute; MLFLOW_HTTP_* win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", f"{deadline():g}")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def health_url(uri: str) -> str:
    """The server's health endpoint, without user and password: MLflow serves it to anyone
    (its basic-auth app too), and urllib refuses `user:pass@` hosts."""
    parts = urllib.parse.urlsplit(uri.rstrip("/"))
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, f"{parts.path}/health", "", ""))


def check_reachable(uri: str) -> None:
    """A tracking server answers its health check within the deadline, or one line says why."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    import http.client
    import urllib.error
    import urllib.request

    seconds = deadline()
    try:
        with urllib.request.urlopen(health_url(uri), timeout=seconds) as response:
            if int(response.status) == 200:
                return
            reason = f"answered HTTP {response.status} to its health check"
    except urllib.error.HTTPError as exc:
        reason = f"answered HTTP {exc.code} to its health check"
    except (ValueError, http.client.InvalidURL):  # its words may quote a piece of the password
        raise TrackingError(
            "the MLflow tracking URI is not a URL that can be opened: percent-encode any '/', "
            "'?', '#' or '@' in its user or password"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        if isinstance(cause, TimeoutError):
            reason = f"did not answer within {seconds:g} s"
        else:
            reason = f"cannot be reached ({getattr(cause, 'strerror', None) or cause})"
    raise TrackingError(
        f"MLflow tracking server {redact(uri)} {reason}; start it (`make up`) or set "
        f"MLFLOW_TRACKING_URI ({TIMEOUT_ENV} sets the wait)"
    )


_SQLITE_CAUSES = (  # sqlite's words -> what the user should know
    ("database is locked", "is locked by another writer (sqlite takes one at a time); for "
     "concurrent runs use a tracking server: `make up`, then "
     "MLFLOW_TRACKING_URI=http://127.0.0.1:5000"),
    ("readonly database", "is read-only (sqlite could not write to it or its folder)"),
    ("file is not a database", "is not an MLflow sqlite store (file is not a database); "
     "move it away or point MLFLOW_TRACKING_URI elsewhere"),
    ("database disk image is malformed", "is damaged (database disk image is malformed); "
     "restore it from a backup or point MLFLOW_TRACKING_URI elsewhere"),
    ("database or disk is full", "cannot grow: the disk is full"),
    ("unable to open database file", "cannot be opened (missing folder or no permission)"),
    ("disk i/o error", "hit a disk I/O error"),
)  # fmt: skip


def store_error_line(exc: BaseException, uri: str | None = None) -> str | None:
    """One line naming the store for a failure sqlite explained; None for anything else."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    for words, meaning in _SQLITE_CAUSES:
        if words in text:
            where = f" {redact(uri.removeprefix('sqlite:///'))}" if uri else ""
            return f"the sqlite MLflow store{where} {meaning}"
    return None


def failure_line(exc: Exception, tracking_uri: str | None = None) -> tuple[str, int] | None:
    """The one line and exit code for a user-facing failure; None for a bug."""
    # the study database's errors name it themselves: sqlite's words there are not MLflow's
    line = None if isinstance(exc, SearchError) else store_error_line(exc, tracking_uri)
    if line is not None:
        return line, TrackingError.exit_code
    if isinstance(exc, FmnistError):
        return redact(str(exc)), exc.exit_code
    if isinstance(exc, OSError) and exc.errno in LOCAL_CAUSES:
        where = exc.filename or "a local file"
        return f"{where}: {LOCAL_CAUSES[exc.errno]} ({exc.strerror})", STORAGE_EXIT
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions and isinstance(exc, mlflow_exceptions.MlflowException):
        # the store refused something mid-run (server died, 403, ...)
        where = f"MLflow at {redact(tracking_uri)}" if tracking_uri else "MLflow"
        return f"{where}: {redact(first_line(exc))}", TrackingError.exit_code
    return None


DEFAULT_DB = "mlflow.db"


def workspace_root(cwd: Path) -> Path:
    """The repo a stage runs for: cwd, or the repo of a DVC temp experiment workspace
    (`<repo>/.dvc/tmp/exps/...`, deleted afterwards: tracking must land in the repo's store)."""
    parts = cwd.resolve().parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd.resolve()


def resolve_tracking_uri(given: str | None, cwd: Path) -> str:
    """The given URI (flag or MLFLOW_TRACKING_URI), else the repo's own sqlite store."""
    return given or f"sqlite:///{(workspace_root(cwd) / DEFAULT_DB).resolve()}"


def environment_tracking_uri(root: Path) -> str:
    """This process's store: MLFLOW_TRACKING_URI, else the project's sqlite file at root."""
    return resolve_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"), root)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


_ready: set[str] = set()


def open_store(uri: str) -> None:
    """Point MLflow at uri; once per process: check it, create a new sqlite store (one process
    at a time), end dead processes' runs KILLED (tracking.lifecycle)."""
    load_mlflow().set_tracking_uri(uri)
    if uri in _ready:
        return
    check_scheme(uri)
    check_reachable(uri)
    db = sqlite_path(uri)
    with mlflow_errors(f"MLflow at {redact(uri)}"):
        from mlflow import MlflowClient

        if db is not None:
            _create_sqlite_once(uri, db)
        _ready.add(uri)
        client = MlflowClient(uri)
        ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
        for run_id in close_orphaned_runs(client, ids):
            print(f"fmnist: closed run {run_id} as KILLED: its process had died", flush=True)


@contextlib.contextmanager
def mlflow_errors(what: str) -> Iterator[None]:
    """An MlflowException in the block ends as one TrackingError line: `what: its first line`."""
    load_mlflow()  # the first import of the process is a long-lived one
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise TrackingError(f"{what}: {first_line(exc)}") from None


@contextlib.contextmanager
def store_client(uri: str, run_id: str | None = None, doing: str = "") -> Iterator[Any]:
    """An MlflowClient of the opened store; its errors end as one line naming the store."""
    where = f"MLflow at {redact(uri)}" + (f": run {run_id}" if run_id else "")
    with mlflow_errors(f"{where}: {doing}".removesuffix(": ")):
        from mlflow import MlflowClient

        open_store(uri)
        yield MlflowClient(uri)


def _create_sqlite_once(uri: str, db: Path) -> None:
    """Two processes creating a sqlite store at once crash (`duplicate column name`): a lock on
    `<db>.lock` makes the others wait; it then records the database's inode, so later
    processes skip the (second-long) creation check."""
    import fcntl

    if _created(db):
        return  # created before: nothing to write (a read-only store can still be read)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{db}.lock", "a", encoding="utf-8")  # noqa: SIM115 (held below)
    except OSError as exc:
        read_only = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        if read_only and db.is_file():
            return  # an existing store we cannot write: reading works; a write says read-only
        state = f" is read-only ({exc.strerror})" if read_only else f": {exc.strerror}"
        raise TrackingError(f"the sqlite MLflow store {db}{state}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _created(db):
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates the tracking tables
            client.search_registered_models(max_results=1)  # ... and the registry's
            lock.truncate(0)
            lock.write(f"created {db.stat().st_ino}")


def _created(db: Path) -> bool:
    """`<db>.lock` names this very database file (a re-created one gets a new inode)."""
    with contextlib.suppress(FileNotFoundError):
        return Path(f"{db}.lock").read_text(encoding="utf-8") == f"created {db.stat().st_ino}"
    return False
