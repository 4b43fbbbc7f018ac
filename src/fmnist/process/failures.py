"""What a failed or interrupted command tells its user: one line and a specific exit code for
users' mistakes and the world's faults, and signal handling; anything else is a bug."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fmnist.process.errors import FmnistError, first_line

STORAGE_EXIT = 9  # a local file or folder could not be read or written
LOCAL_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EDQUOT: "the disk quota is used up",
    errno.EEXIST: "a file is in the way",
}


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into the unwinding Ctrl-C gives (runs end KILLED, temp files go)."""

    def __init__(self, signum: int, *, at_once: bool = False) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.at_once = at_once  # a second signal cut a held block short: nothing was undone


_unwinding: list[list[int]] = []  # per signals_unwind block, innermost last: the signals it saw


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """Ctrl-C and SIGTERM (dvc, Prefect cancelling) unwind the block as Interrupted: runs end
    KILLED, temporary files go. A signal whose raise a library lost (inside a finalizer, where
    Python only prints "Exception ignored", or a bare `except:`; TensorFlow and Keras have both
    on a fit's path) is raised at the next safe point (raise_lost_signal) or the block's end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def unwind(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    _unwinding.append(seen)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.getsignal(sig)  # kept first: restored whatever comes
                signal.signal(sig, unwind)
        yield
        if all(signal.getsignal(sig) is unwind for sig in previous):  # else said: it stands
            raise_lost_signal()
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is unwind:
                signal.signal(signum, handler)
        _unwinding[:] = [entry for entry in _unwinding if entry is not seen]  # by identity


def raise_lost_signal() -> None:
    """A safe point: raise a Ctrl-C or SIGTERM the signals_unwind block saw but lost."""
    if _unwinding and _unwinding[-1]:
        raise Interrupted(_unwinding[-1][-1])


@dataclass
class Held:
    """A Ctrl-C or SIGTERM that came inside signals_held, kept for a safe point."""

    signum: int | None = None  # held, not yet raised
    count: int = 0  # signals received, raised ones too
    doing: str = ""  # what the block is finishing: said when the first signal is held

    def safe_point(self) -> None:
        """Stop here if a signal came: raise it (as Interrupted)."""
        if self.signum is not None:
            signum, self.signum = self.signum, None
            raise Interrupted(signum)


@contextlib.contextmanager
def signals_held(second_stops: bool = True) -> Iterator[Held]:
    """Ctrl-C and SIGTERM inside the block wait for its safe points or its end, then go to the
    handler they found: for writes that must not be cut (a cut one can leave the process's own
    database transaction open). A second signal stops at once (second_stops); off the main
    thread (no signal handlers) nothing is held."""
    held = Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: Any) -> None:
        held.count += 1
        if held.count > 1 and second_stops:
            raise Interrupted(signum, at_once=True)
        if held.count == 1 and held.doing:  # os.write: a print here could cut one short
            line = f"fmnist: stopping once {held.doing} is finished or undone"
            os.write(2, f"{line} (a second signal stops at once)\n".encode())
        held.signum = held.signum or signum

    previous: dict[int, Any] = {
        signum: signal.signal(signum, hold)
        for signum in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield held
    except FmnistError as exc:  # the block failed with a signal held: the signal says it
        if held.signum is None or signal.getsignal(held.signum) is not hold:
            raise
        stopped = Interrupted(held.signum)
        stopped.add_note(first_line(exc))  # what the failure left, in its one line
        raise stopped from None
    finally:
        ours = {s for s in previous if signal.getsignal(s) is hold}
        for signum in ours:
            signal.signal(signum, previous[signum])
    if held.signum in ours:  # (not when the block said its outcome: that stands)
        handler = previous[held.signum]
        if callable(handler):
            handler(held.signum, None)  # raises KeyboardInterrupt (or Interrupted)
        elif handler == signal.SIG_DFL:
            raise Interrupted(held.signum)


def exit_on_signal(code: int) -> None:
    """The outcome is said: a Ctrl-C or SIGTERM from now on exits at once with its code (never
    one contradicting what was printed, a library exit hook's traceback, or a stuck hook)."""

    def now(signum: int, frame: Any) -> None:
        with contextlib.suppress(Exception):  # (a print it cut short cannot be flushed)
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, now)


def interrupted_line(exc: KeyboardInterrupt) -> tuple[str, int]:
    """'interrupted (SIGINT)' and 130, or SIGTERM's 143: 128 + the signal, as shells say."""
    signum = getattr(exc, "signum", signal.SIGINT)
    notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", []))  # what was undone
    return f"interrupted ({signal.Signals(signum).name}){notes}", 128 + int(signum)
