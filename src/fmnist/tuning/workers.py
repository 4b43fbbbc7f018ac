"""Tuning without Prefect (`fmnist search`, `fmnist sweep`): trials on a local Dask cluster, or
a scheduler's; each worker warms up once, then takes trials one at a time."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from fmnist.params.config import Params
from fmnist.pipeline import dvc_cli
from fmnist.process.errors import SearchError, first_line
from fmnist.tracking.mlflow_store import redact
from fmnist.tuning.search import LineSink, SearchResult, tune
from fmnist.tuning.space import Tuning
from fmnist.tuning.trial import TrialJob, TrialRecord, run_trial, warm_up


def tune_on_dask(
    params: Params,
    tuning: Tuning,
    name: str,
    trials: int,
    workers: int | None,
    dask_address: str | None,
    given_uri: str | None,
    timeout: float | None = None,
    on_line: LineSink = print,
) -> SearchResult:
    """A whole run in the working folder: the data prepared once through DVC, then tune."""
    from fmnist.tracking.mlflow_store import open_store, resolve_tracking_uri

    uri = resolve_tracking_uri(given_uri, Path.cwd())
    open_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the local workers' store (never a task argument)
    dvc_cli.reproduce(Path.cwd(), "prepare", dvc_cli.stage_env(), on_line)
    run = functools.partial(run_trials, dask_address=dask_address, on_line=on_line)
    return tune(params, tuning, name, trials, workers, uri, run, timeout, on_line)


def run_trials(
    job: TrialJob,
    trials: int,
    workers: int,
    dask_address: str | None,
    on_line: LineSink = print,
) -> list[TrialRecord]:
    """The trials on a local cluster of `workers` processes, or dask_address's; interrupted,
    queued trials are cancelled. A lost trial is reported (fail_orphans fails it)."""
    from distributed import Client, as_completed

    cluster = None if dask_address else _local_cluster(workers)
    where = cluster or dask_address
    try:
        client = Client(where, timeout=30)
    except (OSError, ValueError, TimeoutError) as exc:
        raise SearchError(f"Dask scheduler {where}: {first_line(exc)}") from None
    results: list[TrialRecord] = []
    futures: list[Any] = []
    with client:
        try:
            warm = client.run(warm_up, job)  # once per worker, before the trials: not theirs
            slowest = max(warm.values(), default=0.0)
            on_line(f"{len(warm)} Dask workers ready (TensorFlow, splits, stores): {slowest:.1f} s")
            futures = [
                client.submit(run_trial, job, key=f"trial-{i}-{job.parent_run_id}")
                for i in range(trials)
            ]
            for future in as_completed(futures):
                try:
                    result = future.result()
                except SearchError:
                    raise
                except Exception as exc:
                    on_line(f"a trial failed outside its training: {redact(first_line(exc))}")
                    continue
                if result is not None:
                    on_line(result.line())
                    results.append(result)
        finally:
            client.cancel(futures)
            if cluster is not None:
                cluster.close()
    return results


def _local_cluster(workers: int) -> Any:
    """A local cluster whose processes ignore Ctrl-C: the terminal sends SIGINT to the whole
    foreground group, and a worker would print its own KeyboardInterrupt traceback; the run
    stops them itself. An ignored signal stays ignored across fork and exec, so SIGINT is
    ignored while they start (about 2 s: a Ctrl-C then is lost), then handled here again."""
    import signal

    from distributed import LocalCluster

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port, never a clash with another cluster's
            silence_logs=50,  # logging.CRITICAL: a worker's own chatter is not the user's
        )
    finally:
        signal.signal(signal.SIGINT, previous)
