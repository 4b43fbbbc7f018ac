"""Who owns an MLflow run (host, pid, process start time: a reused pid is not the owner), and
ending KILLED, by the next command on that host, the runs whose process died. Other hosts'
runs are left alone: whether their process lives cannot be known from here."""

from __future__ import annotations

import os
import socket
from typing import Any

OWNER_TAG = "fmnist.owner"  # "<host>:<pid>:<process start time>"
NOTE_TAG = "mlflow.note.content"  # shown as the run's description in the MLflow UI
# psutil derives a start time from boot time and uptime; a clock step (NTP, a resumed VM)
# shifts it a little: within this, it is the same process (a reused pid starts much later).
SAME_START = 1.0


def _start_time(pid: int) -> str | None:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return "unknown"


def owner() -> str:
    """This process, as OWNER_TAG records it."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_gone(recorded: str) -> bool:
    """True when `recorded` names a process of this host that no longer runs."""
    recorded_host, _, rest = recorded.partition(":")
    pid_text, _, started = rest.partition(":")
    if recorded_host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host's (or unreadable): not ours to judge
    now = _start_time(int(pid_text))
    if now is None or "unknown" in (now, started):
        return now is None  # unknown: cannot tell, a live pid is taken for the owner
    try:
        return abs(float(now) - float(started)) > SAME_START
    except ValueError:
        return False


def close_orphaned_runs(client: Any, experiment_ids: list[str]) -> list[str]:
    """End KILLED, with a note, every RUNNING run here whose owner process is gone; their ids."""
    if not experiment_ids:
        return []
    host = socket.gethostname()
    running = client.search_runs(
        experiment_ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_TAG}` LIKE '{host}:%'",
        max_results=1000,
    )
    closed = []
    for run in running:
        recorded = run.data.tags.get(OWNER_TAG, "")
        if owner_gone(recorded):
            note = (
                f"Ended KILLED by fmnist: its process (pid {recorded.split(':')[1]} on {host}) "
                "was gone, killed or stopped by a power loss, before the run could end."
            )
            client.set_tag(run.info.run_id, NOTE_TAG, note)
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed
