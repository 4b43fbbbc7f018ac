"""Everything that talks to MLflow tracking: runs, params, metrics, artifacts, models."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.errors import TrackingError, first_line
from fmnist.store import redact

if TYPE_CHECKING:
    from fmnist.config import Params

DEFAULT_DB = "mlflow.db"
SUMMARY_ARTIFACT = "model_summary.txt"
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a child run under a parent
SWEEP_ARTIFACT = "sweep/comparison.json"
PARENT_ENV = "FMNIST_PARENT_RUN_ID"  # set by a sweep: the stages' runs become its children


def workspace_root(cwd: Path) -> Path:
    """The repo a stage runs for: cwd itself, or the repo of a DVC temp experiment workspace.

    `dvc exp run --temp` (and `dvc queue`) run stages in `<repo>/.dvc/tmp/exps/.../tmpXXXX`,
    a folder DVC deletes afterwards; tracking must land in the repo's own store.
    """
    parts = cwd.resolve().parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd.resolve()


def default_tracking_uri(root: Path) -> str:
    """MLflow's own default, `sqlite:///mlflow.db`, made absolute at the repo root."""
    return f"sqlite:///{(root / DEFAULT_DB).resolve()}"


def resolve_tracking_uri(given: str | None, cwd: Path) -> str:
    """The given URI (flag or MLFLOW_TRACKING_URI), else the repo's own sqlite store."""
    return given or default_tracking_uri(workspace_root(cwd))


def _local_artifact_root(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts go beside the database (not under whatever cwd is)."""
    db = sqlite_path(uri)
    if db is None:
        return None  # a tracking server decides where artifacts live
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (db.parent / "mlruns" / safe).as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


_ready: set[str] = set()


def open_store(uri: str) -> None:
    """Point MLflow at uri, once per process: the URI's scheme is checked, a tracking server
    must answer within the deadline (fmnist.store), a new sqlite store is created by one
    process at a time, and runs whose process died on this host are closed KILLED.

    MLflow creates (and migrates) a sqlite store on first use; two processes doing that at
    once crash (`duplicate column name`). An exclusive lock on `<db>.lock` beside the file
    makes every other process wait until the tables exist; the lock file then records the
    database's inode, so later processes skip the (second-long) creation check.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from fmnist.store import check_reachable, check_scheme

    mlflow.set_tracking_uri(uri)
    if uri in _ready:
        return
    check_scheme(uri)
    check_reachable(uri)
    db = sqlite_path(uri)
    try:
        if db is not None:
            _create_sqlite_once(uri, db)
        _ready.add(uri)
        _close_orphans(uri)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)}: {first_line(exc)}") from None


def _create_sqlite_once(uri: str, db: Path) -> None:
    import fcntl

    if _lock_mark(db) == _created_mark(db):
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
        if _lock_mark(db) != _created_mark(db):
            from mlflow import MlflowClient

            client = MlflowClient(uri)
            client.search_experiments(max_results=1)  # creates the tracking tables
            client.search_registered_models(max_results=1)  # ... and the registry's
            lock.truncate(0)
            lock.write(_created_mark(db))


def _close_orphans(uri: str) -> None:
    """Runs left RUNNING by a process of this host that died are ended KILLED (lifecycle)."""
    from mlflow import MlflowClient

    from fmnist.lifecycle import close_orphaned_runs

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    for run_id in close_orphaned_runs(client, ids):
        print(f"fmnist: closed run {run_id} as KILLED: its process had died", flush=True)


@contextlib.contextmanager
def store_created_alongside(uri: str) -> Iterator[None]:
    """Create a new sqlite store in a second process while the block runs (TensorFlow's
    import, in train): the two seconds of MLflow's table creation then cost no wall time on
    a second core. open_store's lock serializes it with everything else; the block's own
    open_store waits for it. On exit the helper is waited for, never killed (a store cut off
    mid-creation would be half-migrated). No-op for servers and stores that exist."""
    db = sqlite_path(uri)
    if db is None or uri in _ready or _lock_mark(db) == _created_mark(db):
        yield
        return
    import subprocess
    import sys

    helper = subprocess.Popen(
        [sys.executable, "-c", "import sys, fmnist.tracking as t; t.open_store(sys.argv[1])", uri],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # on failure the block's own open_store reports it
    )
    try:
        yield
    finally:
        helper.wait()


def _lock_mark(db: Path) -> str | None:
    """What `<db>.lock` records: the created mark of the database it last saw created."""
    try:
        return Path(f"{db}.lock").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _created_mark(db: Path) -> str:
    """Names this database file (a deleted and re-created one gets a new inode)."""
    try:
        return f"created {db.stat().st_ino}"
    except FileNotFoundError:
        return "absent"


def _experiment_id(uri: str, experiment: str) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return str(found.experiment_id)
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.create_experiment(experiment, _local_artifact_root(uri, experiment)))
    except MlflowException:  # created meanwhile by a concurrent run
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            raise
        return str(found.experiment_id)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'train': {'epochs': 5}} -> {'train.epochs': 5}; lists get their index as a key."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def params_for_tracking(params: Params) -> dict[str, str]:
    """Every param that shapes a model, flat, as MLflow stores them (strings)."""
    dumped = params.model_dump(mode="json", by_alias=True, exclude={"download"})
    return {k: str(v) for k, v in flatten(dumped).items()}


@contextlib.contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Start a run (nested under parent_run_id if given) owned by this process; it ends
    FINISHED, FAILED if the block raises, KILLED if it is interrupted (Ctrl-C, SIGTERM)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from fmnist.lifecycle import owner_tags

    tags = {**(tags or {}), **owner_tags()}
    tags |= {PARENT_TAG: parent_run_id} if parent_run_id else {}
    try:
        open_store(uri)
        experiment_id = _experiment_id(uri, experiment)
        run = mlflow.start_run(run_name=run_name, tags=tags, experiment_id=experiment_id)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)}: {first_line(exc)}") from None
    try:
        yield run.info.run_id
    except KeyboardInterrupt:
        _end_run(uri, "KILLED", report=False)
        raise
    except BaseException:
        _end_run(uri, "FAILED", report=False)
        raise
    _end_run(uri, "FINISHED", report=True)


def _end_run(uri: str, status: str, *, report: bool) -> None:
    """End the active run; a store that fails now is one line when report (else the error
    already on its way stays the one reported)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.end_run(status)
    except MlflowException as exc:
        if report:
            line = f"MLflow at {redact(uri)}: ending the run {status}: {first_line(exc)}"
            raise TrackingError(line) from None


def log_to_run(
    uri: str,
    run_id: str,
    metrics: Mapping[str, float],
    dicts: Mapping[str, Mapping[str, Any]],
    files: Sequence[tuple[Path, str]],
) -> None:
    """Add metrics, JSON and files to a run that has ended, without reopening it: its status
    stays what it was, whatever happens here."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    open_store(uri)
    client = MlflowClient(uri)
    try:
        _log_metrics_to(client, run_id, metrics)
        for name, data in dicts.items():
            client.log_dict(run_id, dict(data), name)
        for path, artifact_dir in files:
            client.log_artifact(run_id, str(path), artifact_dir)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)}: run {run_id}: {first_line(exc)}") from None


def _log_metrics_to(client: Any, run_id: str, metrics: Mapping[str, float]) -> None:
    """Metrics (step 0, now) on run_id through the client: no active run is needed."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def log_params(params: Mapping[str, str]) -> None:
    import mlflow

    mlflow.log_params(dict(params))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
    """Keras epoch-end hook: the epoch's metrics at step = epoch (1-based, as Keras prints)."""
    log_metrics(logs, step=epoch)


def set_tags(tags: Mapping[str, str]) -> None:
    import mlflow

    mlflow.set_tags(dict(tags))


@contextlib.contextmanager
def sweep_run(uri: str, experiment: str, name: str, plan: Sequence[Any]) -> Iterator[str]:
    """The sweep's parent run (its trainings' runs nest under it); ends FAILED if it raises."""
    with tracked_run(uri, experiment, run_name=name, tags={"fmnist.sweep": name}) as run_id:
        log_params(
            {
                "sweep.trainings": ",".join(p.training.name for p in plan),
                "sweep.size": str(len(plan)),
            }
        )
        yield run_id


def run_metrics(uri: str, run_id: str) -> dict[str, float]:
    """The latest value of each metric a run logged."""
    return dict(_run_data(uri, run_id).metrics)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    import mlflow

    mlflow.log_dict(dict(data), artifact_file)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def run_params(uri: str, run_id: str) -> dict[str, str]:
    """The params a run logged."""
    return dict(_run_data(uri, run_id).params)


def _run_data(uri: str, run_id: str) -> Any:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    open_store(uri)
    try:
        return MlflowClient(uri).get_run(run_id).data
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)}: run {run_id}: {first_line(exc)}") from None


REUSED_TAG = "fmnist.reused_from_run"  # on a sweep's link run: the run DVC reused


def link_reused_run(
    uri: str,
    parent_run_id: str,
    name: str,
    run_id: str,
    metrics: Mapping[str, float],
    note: str,
) -> bool:
    """A sweep cell whose training run_id is not parent_run_id's child (DVC reused an earlier
    training: no new run was made) gets a FINISHED child run NAME under the parent, tagged
    with run_id and noted, holding the cell's metrics; returns whether it was reused."""
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException

    from fmnist.lifecycle import NOTE_TAG

    open_store(uri)
    client = MlflowClient(uri)
    try:
        if client.get_run(run_id).data.tags.get(PARENT_TAG) == parent_run_id:
            return False
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        tags = {PARENT_TAG: parent_run_id, REUSED_TAG: run_id, NOTE_TAG: note}
        link = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        _log_metrics_to(client, link, metrics)
        client.set_terminated(link, RunStatus.to_string(RunStatus.FINISHED))
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)}: run {run_id}: {first_line(exc)}") from None
    return True
