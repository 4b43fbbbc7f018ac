"""The stack's configuration and its record: `<state>/stack.json`, the services `up` started.
Database URLs reach the servers by environment, never on a command line (`ps` shows it to
every user); the record holds redacted URLs; the state folder, record and logs are private."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fmnist.process.errors import FmnistError
from fmnist.process.files import atomic_path

STATE_FILE = "stack.json"


class StackError(FmnistError):
    """The local stack could not start, or is in a state that needs the user's hand."""

    exit_code = 7


class DamagedRecord(StackError):
    """stack.json is unreadable, not JSON, or not the list of services `up` writes."""

    def __init__(self, path: Path, why: str) -> None:
        self.why = why
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        super().__init__(
            f"{shown} is damaged ({why}); run `fmnist stack down` to stop what can be found"
        )


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which loopback ports it takes."""

    root: Path
    state_dir: Path  # absolute: it is the marker every process of the stack carries
    prefect_port: int = 4200
    mlflow_port: int = 5000
    tracking_uri: str | None = None  # default: sqlite:///<root>/mlflow.db
    # Production: MLflow on a database (runs then track through it), Prefect on one too
    mlflow_backend_uri: str | None = None  # default: the tracking store above
    mlflow_artifacts: str | None = None  # default: <root>/mlruns
    prefect_database_url: str | None = None  # postgresql+asyncpg://...; default: sqlite
    env: Mapping[str, str] = field(default_factory=dict)  # extra env for every process


@dataclass(frozen=True)
class Service:
    """One process `up` started, as recorded in stack.json."""

    name: str
    pid: int
    cmdline: list[str]  # as started, redacted
    url: str
    health_url: str
    log: str
    create_time: float | None = None  # psutil's; None in records made before it was kept


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """text without passwords in URLs or `password=`, and each of secrets as `***`."""
    from fmnist.tracking.mlflow_store import redact as redact_uris

    text = redact_uris(text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:  # a 1-2 character "password" would mangle everything
            text = text.replace(secret, "***")
    return text


def passwords(values: Iterable[str]) -> set[str]:
    """The passwords in URLs among values (as written and percent-decoded)."""
    found: set[str] = set()
    for value in values:
        with contextlib.suppress(ValueError):
            password = urllib.parse.urlsplit(value).password if "://" in value else None
            if password:
                found |= {password, urllib.parse.unquote(password)}
    return found


def private_dir(path: Path) -> None:
    """A folder only its owner can enter (the state dir, its logs)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def save(cfg: StackConfig, services: list[Service]) -> None:
    """Record services in `<state>/stack.json` (private, replaced whole: never half-written)."""
    with atomic_path(cfg.state_dir / STATE_FILE, mode=0o600) as tmp:
        tmp.write_text(json.dumps([asdict(s) for s in services], indent=2), encoding="utf-8")


def load_services(state_dir: Path) -> list[Service]:
    """What the last `up` started (empty when the stack is down), or DamagedRecord."""
    path = state_dir / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeError) as exc:
        raise DamagedRecord(path, f"unreadable: {exc}") from None
    if not text.strip():
        raise DamagedRecord(path, "empty")
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DamagedRecord(path, f"not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise DamagedRecord(path, f"a list of services expected, found {_kind(entries)}")
    return [_service(path, i, entry) for i, entry in enumerate(entries, 1)]


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "pid": int, "cmdline": list, "url": str, "health_url": str, "log": str,
}  # fmt: skip


def _service(path: Path, number: int, entry: object) -> Service:
    if not isinstance(entry, dict):
        raise DamagedRecord(path, f"service {number} is {_kind(entry)}, not an object")
    missing = [key for key in _FIELDS if key not in entry]
    if missing:
        raise DamagedRecord(path, f"service {number} lacks {', '.join(missing)}")
    for key, kind in {**_FIELDS, "create_time": (int, float, type(None))}.items():
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DamagedRecord(path, f"service {number}: {key} is {_kind(value)}")
    if entry["pid"] <= 0 or not all(isinstance(arg, str) for arg in entry["cmdline"]):
        raise DamagedRecord(path, f"service {number}: pid or cmdline out of shape")
    return Service(**{key: entry[key] for key in _FIELDS}, create_time=entry.get("create_time"))


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"
