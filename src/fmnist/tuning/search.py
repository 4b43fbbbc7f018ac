"""A tuning run, the search's or a sweep's: plan its trials, run them on Dask, finish (the
study's summary on the run's MLflow run; the best trial written back as a DVC experiment,
which trains, evaluates and registers it under the promotion rule). `fmnist search`,
`fmnist sweep` and their Prefect flows all call these; one trial is fmnist.tuning.trial.

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
from fmnist.pipeline import dvc_cli, records
from fmnist.process import console, layout
from fmnist.process.errors import SearchError, first_line
from fmnist.tracking import runs as tracking
from fmnist.tuning import study as study_store
from fmnist.tuning.grid import Tuning, cell_name
from fmnist.tuning.report import Cost, TrialRecord, cost, counts, ranked, ranking, rows
from fmnist.tuning.space import describe
from fmnist.tuning.trial import OVERRIDES_ATTR, RUN_ATTR, TRAINED_WITH_ATTR, TrialJob, TrialResult
from fmnist.tuning.workers import run_trials

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class SearchResult:
    trials: dict[str, int]  # the study's trials per state
    best: TrialRecord
    table: list[dict[str, Any]]  # every trial of the study, best first (rows)
    cost: Cost | None  # this run's trials
    registered: dict[str, Any]  # the best's registered record (registered.json)
    experiment: str | None  # the DVC experiment of the best (None: written back before)
    test_accuracy: float | None


def jobs(
    root: Path,
    params: Params,
    tuning: Tuning,
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
        tuning=tuning,
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


def tune(
    params: Params,
    tuning: Tuning,
    name: str,
    trials: int,
    workers: int | None,
    dask_address: str | None,
    uri: str,
    timeout: float | None = None,
    on_line: LineSink = print,
) -> SearchResult:
    """A whole run without Prefect (`fmnist search`, `fmnist sweep`) in the working folder:
    the data prepared once through DVC, the trials on Dask (default: a worker per CPU, and
    per trial at most), finish."""
    from fmnist.tracking.mlflow_store import open_store

    root = Path.cwd()
    open_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the local workers' store (never a task argument)
    dvc_cli.reproduce(root, "prepare", dvc_cli.stage_env(), on_line)  # the data trials read
    with search_run(uri, params, tuning, name, root, trials, on_line) as (parent, n):
        workers = min(workers or os.cpu_count() or 1, max(n, 1))
        job = jobs(root, params, tuning, parent, uri, workers, timeout)
        results = run_trials(job, n, workers, dask_address, on_line)
        return finish(params, tuning, root, parent, results, uri, on_line)


@contextmanager
def search_run(
    uri: str,
    params: Params,
    tuning: Tuning,
    name: str,
    root: Path,
    trials: int,
    on_line: LineSink = print,
) -> Iterator[tuple[str, int]]:
    """The run's parent run (each trial's run nests under it) and how many trials it adds (a
    sweep's: its cells still to run). Interrupted or failed, the trials' runs and the study's
    trials left running by workers that died with it are closed before it ends (KILLED or
    FAILED)."""
    from fmnist.tuning.trial import trained_with

    # The study exists (created here, once) before any worker opens it; trials an earlier,
    # killed run left running are failed first.
    study = study_store.load(root, params.search, tuning)
    failed = study_store.fail_orphans(study)
    if failed:
        on_line(f"study {tuning.study}: trials {failed} were left running by a killed run: failed")
    if tuning.grid:
        settings = json.dumps([tuning.grid.space(), trained_with(params)], sort_keys=True)
        trials = study_store.pending(study, tuning.grid, settings)
        logged = {"grid": tuning.grid.space(), **trained_with(params)}
    else:
        study_store.check_space(study, params.search)
        logged = params.search.model_dump(mode="json")
    with tracking.tracked_run(
        uri, params.tracking.experiment, run_name=name, tags={_tag(tuning): tuning.study}
    ) as run_id:
        flat = tracking.flatten(logged)
        tracking.log_params({f"{tuning.kind}.{k}": str(v) for k, v in flat.items()})
        try:
            yield run_id, trials
        except BaseException as exc:
            try:
                close_orphans(uri, params, tuning, root)
            except Exception as cleanup:  # the store is down too: the original error stays
                exc.add_note(f"closing its trials failed: {first_line(cleanup)}")
            raise


def _tag(tuning: Tuning) -> str:
    return f"fmnist.tuning.{tuning.kind}"


def close_orphans(uri: str, params: Params, tuning: Tuning, root: Path) -> None:
    """Runs and trials whose worker process died (killed with an interrupted run) end
    KILLED and FAIL."""
    from mlflow import MlflowClient

    from fmnist.tracking.lifecycle import close_orphaned_runs

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    if experiment is not None:
        close_orphaned_runs(client, [experiment.experiment_id])
    study_store.fail_orphans(study_store.load(root, params.search, tuning))


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
                attrs.get(study_store.ERROR_ATTR),
            )
        )
    return out


def finish(
    params: Params,
    tuning: Tuning,
    root: Path,
    parent_run_id: str,
    results: Sequence[TrialResult],
    uri: str,
    on_line: LineSink = print,
    on_table: Callable[[list[dict[str, Any]]], None] | None = None,
) -> SearchResult:
    """Summarise the study on the parent run (on_table sees its table first, failures and
    all); write the best trial back as a DVC experiment (train, evaluate, register) unless it
    was written back already; returns what happened."""
    from dataclasses import asdict

    from fmnist.tuning.best import write_back
    from fmnist.tuning.summary import log_summary

    study = study_store.load(root, params.search, tuning)
    study_store.fail_orphans(study)  # a worker that died during this run: its trial failed
    trials = study_trials(study)
    table = rows(ranked(trials), cell_name if tuning.grid else describe)
    spent = cost([(r.fit_seconds, r.overhead_seconds) for r in results])
    this_run = asdict(spent) if spent else None
    summary = {
        "study": tuning.study,
        "trials": counts(trials),
        "table": table,
        "this_run": this_run,
    }
    log_summary(study, summary, f"{tuning.kind}/summary.json")
    if on_table:
        on_table(table)
    if results and not any(r.state in ("complete", "pruned") for r in results):
        first = next((r.error for r in results if r.error), "no error recorded")
        raise SearchError(f"every trial of this run failed; the first: {first}")
    top = ranking(trials, 1)
    if not top:
        raise SearchError(f"study {tuning.study}: no trial has completed yet")
    best = top[0]
    on_line(
        f"best: trial {best.number}, val_accuracy {best.val_accuracy:.4f} ({table[0]['config']})"
    )
    registered, experiment, test_accuracy = write_back(
        params, tuning, root, study, best, parent_run_id, uri, on_line
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
            f"{_tag(tuning)}.best_trial": str(best.number),
            "fmnist.registered.version": str(registered["version"]),
            "fmnist.registered.promotion": str(registered["promotion"]),
        }
    )
    summary_counts = counts(trials)
    return SearchResult(summary_counts, best, table, spent, registered, experiment, test_accuracy)
