"""Every failure a user can meet is one line and a specific exit code (fmnist.process.failures)."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fmnist.process.errors import ConfigError, DataIntegrityError, TrackingError
from fmnist.process.failures import STORAGE_EXIT, Interrupted, interrupted_line
from fmnist.tracking.mlflow_store import failure_line


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
    from fmnist.process.failures import signals_held

    finished = False
    with pytest.raises(KeyboardInterrupt), signals_held(second_stops=False):
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, delivered inside the block
        finished = True  # the block is not cut short
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


# --- signals held over writes that must not be cut --------------------------------------------


def _unwind(signum: int, frame: Any) -> None:
    """SIGTERM unwinding, as inside a command (fmnist.process.failures.signals_unwind)."""
    raise Interrupted(signum)


@pytest.fixture
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM unwinds as in a command, put back after."""
    before = signal.signal(signal.SIGTERM, _unwind)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.mark.usefixtures("sigterm_unwinds")
def test_a_held_signal_is_said_at_once_and_raised_when_the_block_is_done(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from fmnist.process.failures import signals_held

    steps = []
    with pytest.raises(Interrupted) as raised, signals_held() as held:
        held.doing = "the registration of m v8"
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered inside the block
        steps.append("after the signal")  # the block is not cut short
    assert steps == ["after the signal"]
    assert raised.value.signum == signal.SIGTERM and not raised.value.at_once
    assert capfd.readouterr().err == (
        "fmnist: stopping once the registration of m v8 is finished or undone "
        "(a second signal stops at once)\n"
    )
    assert signal.getsignal(signal.SIGTERM) is _unwind  # put back


def test_a_safe_point_raises_a_held_signal_and_only_then() -> None:
    from fmnist.process.failures import signals_held

    steps = []
    with pytest.raises(KeyboardInterrupt) as raised, signals_held() as held:
        held.safe_point()  # nothing held: goes on
        steps.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        steps.append(2)
        held.safe_point()
        steps.append(3)
    assert steps == [1, 2]
    assert isinstance(raised.value, Interrupted) and raised.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_stops_the_block_at_once() -> None:
    from fmnist.process.failures import signals_held

    steps = []
    with pytest.raises(Interrupted) as raised, signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        steps.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        steps.append(2)
    assert steps == [1] and raised.value.at_once


def test_an_ignored_signal_stays_ignored() -> None:
    from fmnist.process.failures import signals_held

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_held() as held:
            os.kill(os.getpid(), signal.SIGINT)
            held.safe_point()
        assert held.count == 0 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_block_that_said_its_outcome_ends_with_that_code_on_a_signal() -> None:
    """Said inside the block (exit_on_signal): a signal held before is moot, the block ends
    without raising, and a signal after ends the process at once with the said code."""
    code = (
        "import os, signal\n"
        "from fmnist.process.failures import exit_on_signal, signals_held\n"
        "with signals_held():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    exit_on_signal(3)\n"
        "print('block done', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('not reached', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "block done\n", "")


@pytest.mark.usefixtures("sigterm_unwinds")
def test_a_block_failing_with_a_signal_held_ends_interrupted_with_its_line() -> None:
    from fmnist.process.errors import TrackingError
    from fmnist.process.failures import interrupted_line, signals_held

    with pytest.raises(Interrupted) as raised, signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        raise TrackingError("m v8 is left half-made; the next `fmnist register` completes it")
    assert interrupted_line(raised.value) == (
        "interrupted (SIGTERM); m v8 is left half-made; the next `fmnist register` completes it",
        143,
    )


# --- signals a library lost on their way -------------------------------------------------------


class _LosesASignal:
    """Gets a real SIGTERM while Python finalizes it: the handler's raise happens inside
    __del__, where Python prints "Exception ignored" and goes on (as in TensorFlow's and
    Keras' finalizers during a fit)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs in here and its Interrupted ends the sleep


def test_a_signal_lost_in_a_finalizer_is_raised_at_the_next_safe_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmnist.process.failures import raise_lost_signal, signals_unwind

    lost: list[Any] = []  # what Python "ignored": its hook for exceptions it cannot raise
    monkeypatch.setattr(sys, "unraisablehook", lost.append)
    before = signal.getsignal(signal.SIGTERM)
    steps = []
    with pytest.raises(Interrupted) as raised, signals_unwind():
        _LosesASignal()  # finalized at once
        steps.append("carried on")  # the raise was lost: the block goes on
        raise_lost_signal()
        steps.append("past the safe point")
    assert steps == ["carried on"]
    assert raised.value.signum == signal.SIGTERM
    assert [u.exc_type for u in lost] == [Interrupted]  # it was lost, then raised again
    assert signal.getsignal(signal.SIGTERM) is before  # put back


def test_a_signal_lost_before_a_blocks_end_is_raised_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmnist.process.failures import raise_lost_signal, signals_unwind

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)

    with pytest.raises(Interrupted) as raised, signals_unwind():
        _LosesASignal()
    assert raised.value.signum == signal.SIGTERM
    raise_lost_signal()  # outside the block: nothing is pending


def test_signals_unwind_leaves_an_ignored_signal_ignored() -> None:
    from fmnist.process.failures import signals_unwind

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        with signals_unwind():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_nested_block_keeps_the_outer_ones_lost_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmnist.process.failures import raise_lost_signal, signals_unwind

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted), signals_unwind():
        with signals_unwind():
            pass  # an inner block that ends cleanly
        _LosesASignal()
        raise_lost_signal()
    assert signal.getsignal(signal.SIGTERM) is before
    raise_lost_signal()  # nothing left over


def test_a_lost_signal_does_not_overturn_an_outcome_already_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmnist.process.failures import signals_unwind

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)
    before = signal.getsignal(signal.SIGTERM)
    with signals_unwind():
        _LosesASignal()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as exit_on_signal does once said
    signal.signal(signal.SIGTERM, before)
