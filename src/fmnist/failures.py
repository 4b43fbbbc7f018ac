"""What a failed or interrupted command tells its user: one line and a specific exit code.

Users' mistakes and the world's faults (a bad param, a missing file, a dead or read-only
store, a full disk, Ctrl-C) end as one line naming the real cause; anything else is a bug,
and its traceback is for us.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Iterator
from typing import Any

from fmnist.errors import FmnistError, TrackingError, first_line

STORAGE_EXIT = 9  # a local file or folder could not be read or written
_LOCAL_CAUSES = {
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

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def raise_interrupted(signum: int, frame: Any) -> None:
    """A signal handler: SIGTERM (dvc, Prefect cancelling) unwinds like Ctrl-C."""
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM inside the block are remembered and raised when it is done.

    For imports of native libraries: an interrupt raised inside their start-up callbacks
    aborts the process from C++ (seen here: jaxlib's nanobind, SIGABRT, no message), or
    leaves the extension half made. The wait is the import's few seconds. Signal handlers
    belong to the main thread: elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)  # raises KeyboardInterrupt (or Interrupted)
            elif handler == signal.SIG_DFL:
                raise KeyboardInterrupt


def interrupted_line(exc: KeyboardInterrupt) -> tuple[str, int]:
    """'interrupted (SIGINT)' and 130, or SIGTERM's 143: 128 + the signal, as shells say."""
    signum = getattr(exc, "signum", signal.SIGINT)
    notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", []))  # what was undone
    return f"interrupted ({signal.Signals(signum).name}){notes}", 128 + int(signum)


def failure_line(exc: Exception, tracking_uri: str | None = None) -> tuple[str, int] | None:
    """The one line and exit code for a user-facing failure; None for a bug."""
    from fmnist.errors import SearchError
    from fmnist.store import redact, store_error_line

    # the study database's errors name it themselves: sqlite's words there are not MLflow's
    line = None if isinstance(exc, SearchError) else store_error_line(exc, tracking_uri)
    if line is not None:
        return line, TrackingError.exit_code
    if isinstance(exc, FmnistError):
        return redact(str(exc)), exc.exit_code
    if isinstance(exc, OSError) and exc.errno in _LOCAL_CAUSES:
        where = exc.filename or "a local file"
        return f"{where}: {_LOCAL_CAUSES[exc.errno]} ({exc.strerror})", STORAGE_EXIT
    if _is_mlflow_error(exc):  # the store refused something mid-run (server died, 403, ...)
        where = f"MLflow at {redact(tracking_uri)}" if tracking_uri else "MLflow"
        return f"{where}: {redact(first_line(exc))}", TrackingError.exit_code
    return None


def _is_mlflow_error(exc: Exception) -> bool:
    import sys

    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    return mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException)
