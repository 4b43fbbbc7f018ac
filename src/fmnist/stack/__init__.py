"""The local stack behind `make up/down/status`: Prefect server, work pool and process worker,
the deployments of prefect.yaml, and an MLflow server on the pipeline's tracking store.

Everything binds 127.0.0.1. How the stack knows its processes (psutil: the same on Linux
and macOS, no /proc):

- `up` starts each service in a session of its own with the marker `FMNIST_STACK=<state dir>`
  (and `FMNIST_STACK_SERVICE=<name>`) in its environment, which every child inherits, and
  records its pid, psutil's create_time and its (redacted) command line in `<state>/stack.json`.
- A service's processes are the recorded one, if that pid still runs with the recorded
  create_time (otherwise the pid was reused by a stranger), its descendants, every process
  carrying the marker (children orphaned by a dead parent are reparented, but keep their
  environment) and, on POSIX, what is still in the service's session.
- `down` sends SIGTERM to the services' process groups and to each process found, waits,
  then SIGKILLs whatever is still found; a damaged record is removed after that.

Secrets stay out of sight: database URLs reach the servers by environment, never on a
command line (which `ps` shows every user); the record holds redacted URLs only, and the
state folder, the record and the servers' logs are private to the user (0700, 0600).

The modules: `record` (StackConfig, the services recorded in stack.json, damaged records,
redaction, private files), `processes` (finding and stopping the stack's processes, ports),
`services` (what `up` starts: command lines, environments, health checks, prefect.toml) and
`control` (up, down, status).
"""

from fmnist.stack.control import ServiceStatus, StackStatus, Stopped, down, status, up
from fmnist.stack.processes import (
    MARKER,
    SERVICE_MARKER,
    Found,
    find_processes,
    free_port,
    stop,
)
from fmnist.stack.record import (
    STATE_FILE,
    DamagedRecord,
    Service,
    StackConfig,
    StackError,
    load_services,
    redact,
)
from fmnist.stack.services import PREFECT_TOML, WORK_POOL, healthy, mlflow_command

__all__ = [
    "MARKER",
    "PREFECT_TOML",
    "SERVICE_MARKER",
    "STATE_FILE",
    "WORK_POOL",
    "DamagedRecord",
    "Found",
    "Service",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
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
