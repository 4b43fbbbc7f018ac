"""One trial in the process that runs it (a Dask worker, or this one): ask the study, train with
the train stage's code (the pruner may stop it), as a nested MLflow run, tell the study. Never the
test split. A worker keeps TensorFlow and the splits loaded: a trial's overhead is its build."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.params.config import Params, parse_params
from fmnist.params.overrides import apply_dotted
from fmnist.process import console
from fmnist.process.errors import FmnistError, SearchError, first_line
from fmnist.tracking import runs as tracking
from fmnist.tracking.mlflow_store import environment_tracking_uri, redact
from fmnist.tuning import study as study_store
from fmnist.tuning.report import TrialRecord
from fmnist.tuning.space import Tuning, cell_name, describe, suggest, suggest_cell

WARM = 0.5  # seconds: a warm-up this long started the worker (later ones only check it)
OVERRIDES_ATTR = "fmnist.overrides"  # a trial's searched params.yaml keys (JSON)
TRAINED_WITH_ATTR = "fmnist.trained_with"  # its whole model and train sections (JSON)
RUN_ATTR = "fmnist.mlflow_run_id"
# On the parent run and every trial's run, `fmnist.tuning.<kind>` (search or sweep): the
# study's name; on a trial's run, `.trial` (its number) and `.state` (complete, pruned, failed).


@dataclass(frozen=True)
class TrialJob:
    """What a worker needs for one trial (picklable, no secret)."""

    root: Path  # the project (its study database, by default)
    data_dir: Path  # the prepared splits
    params: Params  # params.yaml (a sweep's options applied): what the trials do not choose
    tuning: Tuning
    parent_run_id: str
    # The stores are the worker's own (MLFLOW_TRACKING_URI, FMNIST_SEARCH_STORAGE): URLs may
    # hold passwords, Prefect keeps what a task is given. A worker's that differ: it refuses.
    tracking_id: str
    storage_id: str
    tags: Mapping[str, str]  # lineage: DVC's data hash, git commit
    threads: int = 0  # TensorFlow threads in the worker process (0: TensorFlow's choice)
    deadline: float | None = None  # time.time() after which no trial starts
    quiet: bool = False  # the workers hide library chatter too (the command's --verbose)


@functools.lru_cache(maxsize=4)
def _load_split(path: Path, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from fmnist.data.splits import load_split

    return load_split(path)


def _split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A prepared split, read once per process (and again if the file changed)."""
    stat = path.stat()
    return _load_split(path.resolve(), stat.st_mtime_ns, stat.st_size)


def _worker_seed() -> int:
    """This Dask worker's number (its name in a local cluster), 0 outside a worker."""
    import zlib

    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except ValueError:  # not running in a Dask worker
        return 0
    return int(name) if name.isdigit() else zlib.crc32(name.encode()) % 1000


def warm_up(job: TrialJob) -> float:
    """A worker's start, once: its stores checked, TensorFlow, the splits; the seconds it took."""
    from fmnist.process.imports import load_keras
    from fmnist.tracking.mlflow_store import open_store

    started = time.perf_counter()
    if job.quiet:
        console.quiet_libraries(verbose=False)
    uri = environment_tracking_uri(job.root)  # this worker's: MLFLOW_TRACKING_URI or the file
    storage = study_store.storage_url(job.root)
    for what, url, expected, variable in (
        ("MLflow store", uri, job.tracking_id, "MLFLOW_TRACKING_URI"),
        ("study database", storage, job.storage_id, study_store.STORAGE_ENV),
    ):
        if study_store.fingerprint(url) != expected:
            raise SearchError(
                f"this Dask worker's {what} is not the search's: give the workers the "
                f"search's {variable}"
            )
    load_keras()  # TensorFlow's first import, then its threads, before its first operation
    if job.threads > 0:
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # TensorFlow started already: its threads are set
            tf.config.threading.set_intra_op_parallelism_threads(job.threads)
            tf.config.threading.set_inter_op_parallelism_threads(job.threads)
    _split(job.data_dir / "train.npz")
    _split(job.data_dir / "val.npz")
    open_store(uri)
    return time.perf_counter() - started


def run_trial(job: TrialJob) -> TrialRecord | None:
    """Ask, train, tell (a failed training too: returned); None past the deadline."""
    if job.deadline is not None and time.time() >= job.deadline:
        return None
    warm = warm_up(job)  # a worker's first trial starts it; later ones find it ready
    started = time.perf_counter()
    study = study_store.load(job.root, job.params.search, job.tuning, worker_seed=_worker_seed())
    trial = study.ask()
    try:
        study_store.claim(trial, job.parent_run_id)
        if job.tuning.grid:
            hidden = [h.model_dump(mode="json") for h in job.params.model.hidden]
            overrides = suggest_cell(trial, job.tuning.grid, hidden)
        else:
            overrides = suggest(trial, job.params.search.space)
        trial.set_user_attr(OVERRIDES_ATTR, json.dumps(overrides))
        outcome = _train(job, trial, overrides, started)
        study_store.tell(study, trial, outcome.state, outcome.val_accuracy, outcome.error)
    except Exception as exc:  # the trial fails, not the search: one line, the study told
        outcome = TrialRecord(trial.number, "failed", None, {}, error=redact(first_line(exc)))
        study_store.tell_failed(study, trial, outcome.error)
    except BaseException:  # interrupted: the trial must not stay RUNNING in the study
        study_store.tell_failed(study, trial)
        raise
    # the bookkeeping after the run ended (telling the study) counts too
    wall = time.perf_counter() - started
    return replace(
        outcome,
        overhead_seconds=max(0.0, wall - outcome.fit_seconds),
        warmup_seconds=warm if warm >= WARM else 0.0,
    )


def _train(job: TrialJob, trial: Any, overrides: dict[str, Any], started: float) -> TrialRecord:
    """The trial's pruned fit in its MLflow run (FAILED when training fails), logged as train's."""
    from fmnist.process.errors import TrainingError
    from fmnist.process.imports import load_keras
    from fmnist.training.fit import compile_model, fit_model, seed_everything, training_batches
    from fmnist.training.model import build_model

    kind = f"fmnist.tuning.{job.tuning.kind}"
    config = cell_name(overrides) if job.tuning.grid else describe(overrides)
    result = TrialRecord(trial.number, "failed", None, overrides, config=config)
    try:
        base = job.params.model_dump(mode="json", by_alias=True)
        params = parse_params(apply_dotted(base, overrides), source=f"trial {trial.number}")
        trial.set_user_attr(TRAINED_WITH_ATTR, json.dumps(trained_with(params)))
        with tracking.tracked_run(
            environment_tracking_uri(job.root),
            params.tracking.experiment,
            run_name=config if job.tuning.grid else f"trial-{trial.number}",
            tags={**job.tags, kind: job.tuning.study, f"{kind}.trial": str(trial.number)},
            parent_run_id=job.parent_run_id,
        ) as run_id:
            trial.set_user_attr(RUN_ATTR, run_id)
            result = replace(result, run_id=run_id)
            train = _split(job.data_dir / "train.npz")  # x (n, 28, 28) uint8, y (n,) uint8
            val = _split(job.data_dir / "val.npz")
            load_keras().backend.clear_session()  # the previous trial's model and graphs go
            seed_everything(params.train.seed)
            model = build_model(params.model)
            compile_model(model, params.train, train_rows=len(train[1]))
            batches = training_batches(train, val, model, params.train)
            flat = tracking.params_for_tracking(params)  # as the train stage logs them
            logged = {k: v for k, v in flat.items() if k.startswith(("model.", "train."))}
            tracking.load_mlflow().log_params(logged | {"search.trial": str(trial.number)})
            reported: list[float] = []  # each epoch's val_accuracy, as the pruner heard it
            pruned_at: list[int] = []

            def report(epoch: int, logs: Mapping[str, float]) -> None:
                reported.append(float(logs["val_accuracy"]))
                trial.report(reported[-1], epoch)
                if trial.should_prune():
                    pruned_at.append(epoch)
                    model.stop_training = True  # Keras' own way to end a fit early

            fit_started = time.perf_counter()
            try:
                hooks = [tracking.log_epoch, report]
                history = fit_model(model, batches, params.train, hooks, verbose=0)
            except TrainingError:
                if not pruned_at:
                    raise
                history = {"val_accuracy": reported}  # a pruned trial that also diverged
            fit_seconds = time.perf_counter() - fit_started
            state = "pruned" if pruned_at else "complete"
            overhead = time.perf_counter() - started - fit_seconds
            tracking.load_mlflow().log_metrics(
                {"fit_seconds": fit_seconds, "overhead_seconds": overhead}
            )
            tracking.load_mlflow().set_tags({f"{kind}.state": state})
            result = replace(
                result,
                state=state,
                val_accuracy=float(history["val_accuracy"][-1]),
                epochs=pruned_at[0] if pruned_at else len(history["val_accuracy"]),
                fit_seconds=fit_seconds,
            )
    except FmnistError as exc:  # a fitted trial whose run could not be ended keeps its result
        return replace(result, error=first_line(exc))
    return result


def trained_with(params: Params) -> dict[str, Any]:
    """The model and train sections as the trial trained (layers without their defaults)."""
    model = params.model.model_dump(mode="json")
    model["hidden"] = [
        h.model_dump(mode="json", exclude_defaults=True) for h in params.model.hidden
    ]
    return {"model": model, "train": params.train.model_dump(mode="json")}
