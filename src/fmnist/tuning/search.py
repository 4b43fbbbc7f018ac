"""The search: plan its trials, run them on Dask, finish (the study's summary on the search's
MLflow run; the best trial written back as a DVC experiment, which trains, evaluates and
registers it under the promotion rule). `fmnist search` and the Prefect flow
`fashion-mnist-search` both call these; one trial is fmnist.tuning.trial.

Selection is on validation: trials never see the test split. The best trial's DVC experiment
measures it once on the test set (evaluate) and register compares that with the champion.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.process import console, layout
from fmnist.process.errors import SearchError, first_line
from fmnist.tracking import runs as tracking
from fmnist.tracking.store import redact
from fmnist.tuning import study as study_store
from fmnist.tuning.report import Cost, TrialRecord, cost, counts, ranking, rows
from fmnist.tuning.space import describe
from fmnist.tuning.trial import (
    OVERRIDES_ATTR,
    RUN_ATTR,
    SEARCH_TAG,
    TRAINED_WITH_ATTR,
    TrialJob,
    TrialResult,
)

LineSink = Callable[[str], None]
SUMMARY_ARTIFACT = "search/summary.json"


@dataclass(frozen=True)
class SearchResult:
    trials: dict[str, int]  # the study's trials per state
    best: TrialRecord
    cost: Cost | None  # this run's trials
    registered: dict[str, Any]  # the best's registered record (registered.json)
    experiment: str | None  # the DVC experiment of the best (None: written back before)
    test_accuracy: float | None


def jobs(
    root: Path,
    params: Params,
    parent_run_id: str,
    uri: str,
    workers: int,
    timeout: float | None = None,
) -> TrialJob:
    """The job every trial of this run gets (lineage read once; threads per worker share the
    CPUs; no trial starts after the timeout)."""
    from fmnist.pipeline.lineage import data_version, git_commit

    data_dir = root / layout.PREPARED
    limit = params.search.timeout if timeout is None else timeout
    return TrialJob(
        root=root,
        data_dir=data_dir,
        params=params,
        parent_run_id=parent_run_id,
        tracking_id=study_store.fingerprint(uri),
        storage_id=study_store.fingerprint(study_store.storage_url(root)),
        tags={
            records.DATA_TAG: data_version(root, data_dir),
            records.COMMIT_TAG: git_commit(root),
        },
        threads=max(1, (os.cpu_count() or 1) // max(1, workers)),
        deadline=time.time() + limit if limit else None,
        quiet=not console.chatter_shown(),
    )


@contextmanager
def search_run(
    uri: str, params: Params, name: str, root: Path, on_line: LineSink = print
) -> Iterator[str]:
    """The search's parent run (each trial's run nests under it). Interrupted or failed, the
    trials' runs and the study's trials left running by workers that died with it are closed
    before it ends (KILLED or FAILED)."""
    search = params.search
    # The study exists (created here, once) before any worker opens it; trials an earlier,
    # killed run left running are failed first.
    study = study_store.load(root, search)
    study_store.check_space(study, search)
    failed = study_store.fail_orphans(study)
    if failed:
        on_line(f"study {search.study}: trials {failed} were left running by a killed run: failed")
    with tracking.tracked_run(
        uri, params.tracking.experiment, run_name=name, tags={SEARCH_TAG: search.study}
    ) as run_id:
        tracking.log_params(
            {
                f"search.{k}": str(v)
                for k, v in tracking.flatten(search.model_dump(mode="json")).items()
            }
        )
        try:
            yield run_id
        except BaseException as exc:
            try:
                close_orphans(uri, params, root)
            except Exception as cleanup:  # the store is down too: the original error stays
                exc.add_note(f"closing its trials failed: {first_line(cleanup)}")
            raise


def close_orphans(uri: str, params: Params, root: Path) -> None:
    """Runs and trials whose worker process died (killed with an interrupted search) end
    KILLED and FAIL."""
    from mlflow import MlflowClient

    from fmnist.tracking.lifecycle import close_orphaned_runs

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    if experiment is not None:
        close_orphaned_runs(client, [experiment.experiment_id])
    study_store.fail_orphans(study_store.load(root, params.search))


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

    from fmnist.tuning.trial import run_trial, warm_up

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
    foreground group, and a worker would print its own KeyboardInterrupt traceback; the search
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


_STATES = {"FAIL": "failed"}  # Optuna's state names -> the words fmnist prints


def study_trials(study: Any) -> list[TrialRecord]:
    """Every trial of the study as a record."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        state = _STATES.get(trial.state.name, trial.state.name.lower())
        value = trial.value
        if state == "pruned" and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        attrs = trial.user_attrs
        out.append(
            TrialRecord(
                trial.number,
                state,
                value,
                json.loads(attrs.get(OVERRIDES_ATTR, "{}")),
                attrs.get(RUN_ATTR),
                json.loads(attrs.get(TRAINED_WITH_ATTR, "{}")),
            )
        )
    return out


def finish(
    params: Params,
    root: Path,
    parent_run_id: str,
    results: Sequence[TrialResult],
    uri: str,
    on_line: LineSink = print,
) -> SearchResult:
    """Summarise the study on the parent run; write the best trial back as a DVC experiment
    (train, evaluate, register) unless it was written back already; returns what happened."""
    from dataclasses import asdict

    from fmnist.tuning.best import write_back
    from fmnist.tuning.summary import log_summary

    study = study_store.load(root, params.search)
    study_store.fail_orphans(study)  # a worker that died during this run: its trial failed
    if results and not any(r.state in ("complete", "pruned") for r in results):
        first = next((r.error for r in results if r.error), "no error recorded")
        raise SearchError(f"every trial of this run failed; the first: {first}")
    trials = study_trials(study)
    top = ranking(trials)
    if not top:
        raise SearchError(f"study {params.search.study}: no trial has completed yet")
    spent = cost([(r.fit_seconds, r.overhead_seconds) for r in results])
    summary = {
        "study": params.search.study,
        "trials": counts(trials),
        "best": rows(top, describe),
        "this_run": asdict(spent) if spent else None,
    }
    log_summary(study, summary, SUMMARY_ARTIFACT)
    best = top[0]
    on_line(
        f"best: trial {best.number}, val_accuracy {best.val_accuracy:.4f} "
        f"({describe(best.overrides)})"
    )
    registered, experiment, test_accuracy = write_back(
        params, root, study, best, parent_run_id, uri, on_line
    )
    tracking.log_metrics(
        {
            "best_val_accuracy": float(best.val_accuracy or 0.0),
            **({"best_test_accuracy": test_accuracy} if test_accuracy is not None else {}),
            **({"overhead_share_median": spent.median_share} if spent else {}),
        }
    )
    tracking.set_tags(
        {
            "fmnist.tuning.search.best_trial": str(best.number),
            "fmnist.registered.version": str(registered["version"]),
            "fmnist.registered.promotion": str(registered["promotion"]),
        }
    )
    return SearchResult(counts(trials), best, spent, registered, experiment, test_accuracy)
