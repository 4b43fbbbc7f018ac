"""Which MLflow store a command uses, and opening it: once per process, checked, created by
one process at a time, with runs of dead processes closed."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmnist.process.errors import TrackingError, first_line
from fmnist.process.imports import load_mlflow
from fmnist.tracking.lifecycle import close_orphaned_runs
from fmnist.tracking.store import check_reachable, check_scheme, redact

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
