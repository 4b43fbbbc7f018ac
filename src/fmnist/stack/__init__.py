"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store, all on
127.0.0.1. How it knows its processes (psutil: the same on Linux and macOS, no /proc):

- `up` starts each service in its own session with the marker `FMNIST_STACK=<state dir>` in
  its environment, which every child inherits, and records its pid, create_time and
  (redacted) command line in `<state>/stack.json`.
- A service's processes are the recorded one (if its create_time matches: else the pid was
  reused), its descendants, every process carrying the marker (orphans are reparented but
  keep their environment) and, on POSIX, what is still in its session.
- `down` SIGTERMs the process groups and each process found, waits, then SIGKILLs the rest.
"""

from fmnist.stack.control import Stopped, down, status, up
from fmnist.stack.processes import MARKER, Found, find_processes, free_port, stop
from fmnist.stack.record import (
    STATE_FILE,
    DamagedRecord,
    Service,
    StackConfig,
    StackError,
    load_services,
    redact,
)
from fmnist.stack.services import PREFECT_TOML, healthy, mlflow_command

__all__ = [
    "MARKER",
    "PREFECT_TOML",
    "STATE_FILE",
    "DamagedRecord",
    "Found",
    "Service",
    "StackConfig",
    "StackError",
    "Stopped",
    "down",
    "find_processes",
    "free_port",
    "healthy",
    "load_services",
    "mlflow_command",
    "redact",
    "status",
    "stop",
    "up",
]
