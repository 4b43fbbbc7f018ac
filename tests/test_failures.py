"""Every failure a user can meet is one line and a specific exit code (fmnist.failures)."""

from __future__ import annotations

import errno
import signal
import sqlite3

import pytest

from fmnist.errors import ConfigError, DataIntegrityError, TrackingError
from fmnist.failures import STORAGE_EXIT, Interrupted, failure_line, interrupted_line


@pytest.mark.parametrize(
    ("exc", "line", "code"),
    [
        (ConfigError("params.yaml: train.epochs: must be > 0 (got -1)"),
         "params.yaml: train.epochs: must be > 0 (got -1)", 2),
        (DataIntegrityError("data/prepared/test.npz: missing"),
         "data/prepared/test.npz: missing", 3),
        (TrackingError("MLflow at postgresql://fm:secret@db/mlflow: down"),
         "MLflow at postgresql://fm:***@db/mlflow: down", 5),
        (OSError(errno.ENOSPC, "No space left on device", "models/model.keras"),
         "models/model.keras: no space left on the device (No space left on device)", STORAGE_EXIT),
        (PermissionError(errno.EACCES, "Permission denied", "/srv/mlruns/1"),
         "/srv/mlruns/1: permission denied (Permission denied)", STORAGE_EXIT),
        (OSError(errno.EROFS, "Read-only file system", "plots/confusion.png"),
         "plots/confusion.png: read-only file system (Read-only file system)", STORAGE_EXIT),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "metrics/train.json"),
         "metrics/train.json: is a folder, not a file (Is a directory)", STORAGE_EXIT),
    ],
)  # fmt: skip
def test_each_failure_is_its_line_and_code(exc: Exception, line: str, code: int) -> None:
    assert failure_line(exc) == (line, code)


def test_a_store_failure_is_named_with_the_store() -> None:
    found = failure_line(sqlite3.OperationalError("attempt to write a readonly database"),
                         "sqlite:////srv/mlflow.db")  # fmt: skip
    assert found == ("the sqlite MLflow store /srv/mlflow.db is read-only "
                     "(sqlite could not write to it or its folder)", 5)  # fmt: skip


def test_a_bug_is_not_a_users_failure() -> None:
    assert failure_line(KeyError("x")) is None
    assert failure_line(OSError(errno.EBADF, "Bad file descriptor")) is None


def test_interruptions_are_130_and_143_with_what_was_undone() -> None:
    assert interrupted_line(KeyboardInterrupt()) == ("interrupted (SIGINT)", 130)
    terminated = Interrupted(signal.SIGTERM)
    terminated.add_note("nothing kept of the partial file")
    assert interrupted_line(terminated) == (
        "interrupted (SIGTERM); nothing kept of the partial file",
        143,
    )


def test_an_interrupt_during_a_deferred_block_is_raised_after_it() -> None:
    import os

    from fmnist.failures import interrupts_deferred

    finished = False
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, delivered inside the block
        finished = True  # the block is not cut short
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
