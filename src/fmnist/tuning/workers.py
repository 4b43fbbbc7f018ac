"""Trials on Dask: a local cluster of worker processes, or a scheduler's address. Each worker
warms up once (TensorFlow, the splits, the stores), then takes trials one at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fmnist.process.errors import SearchError, first_line
from fmnist.tracking.store import redact
from fmnist.tuning.trial import TrialJob, TrialResult, run_trial, warm_up

LineSink = Callable[[str], None]


def run_trials(
    job: TrialJob,
    trials: int,
    workers: int,
    dask_address: str | None,
    on_line: LineSink = print,
) -> list[TrialResult]:
    """`trials` trials on Dask: a local cluster of `workers` processes (one thread each), or
    the scheduler at dask_address. Interrupted: queued trials are cancelled, the cluster
    stopped (its workers with it)."""
    from distributed import as_completed

    if not trials:
        return []
    cluster = None if dask_address else _local_cluster(workers)
    results: list[TrialResult] = []
    futures: list[Any] = []
    with _client(cluster or dask_address) as client:
        try:
            warm = client.run(warm_up, job)  # once per worker, before the trials: not theirs
            slowest = max(warm.values(), default=0.0)
            on_line(f"{len(warm)} Dask workers ready (TensorFlow, splits, stores): {slowest:.1f} s")
            futures = [
                client.submit(run_trial, job, key=f"trial-{i}-{job.parent_run_id}")
                for i in range(trials)
            ]
            for future in as_completed(futures):
                result = _result(future, on_line)
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


@contextmanager
def _client(where: Any) -> Iterator[Any]:
    """A Dask client of a local cluster or a scheduler's address (one line if unreachable)."""
    from distributed import Client

    try:
        client = Client(where, timeout=30)
    except (OSError, ValueError, TimeoutError) as exc:
        raise SearchError(f"Dask scheduler {where}: {first_line(exc)}") from None
    with client:
        yield client


def _result(future: Any, on_line: LineSink) -> TrialResult | None:
    """A trial's result; a worker lost or a failure outside the trial is reported (the study
    is the search's own: those trials are failed by fail_orphans), a SearchError stops all."""
    try:
        return future.result()
    except SearchError:
        raise
    except Exception as exc:
        on_line(f"a trial failed outside its training: {redact(first_line(exc))}")
        return None
