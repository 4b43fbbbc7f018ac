"""Stopping processes: SIGTERM, then SIGKILL what still runs (the local stack's, DVC's)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

import psutil


def running(proc: psutil.Process) -> bool:
    """proc runs (a zombie only waits for its parent; ours are reaped here)."""
    try:
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            return True
        if proc.ppid() == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
    except psutil.Error:
        pass
    return False


def terminate(procs: Iterable[psutil.Process], timeout: float) -> None:
    """SIGTERM procs, SIGKILL those still running after timeout, wait up to 5 s more."""
    left = list(procs)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)  # psutil checks it is still the same process
        deadline = time.monotonic() + wait
        while (left := [p for p in left if running(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
