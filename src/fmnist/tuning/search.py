"""A tuning run (the search's or a sweep's): its MLflow run, the trials, the study's summary with
Optuna's plots, and the best written back as a DVC experiment that trains, evaluates, registers."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fmnist.params.config import Params, load_params
from fmnist.params.overrides import set_param_args
from fmnist.pipeline import dvc_cli, records
from fmnist.process import console, layout
from fmnist.process.errors import SearchError, first_line
from fmnist.tracking import runs as tracking
from fmnist.tuning import study as study_store
from fmnist.tuning.report import Cost, TrialRecord, cost, counts, ranked, ranking, rows
from fmnist.tuning.space import Tuning, cell_name, describe, differences
from fmnist.tuning.trial import OVERRIDES_ATTR, RUN_ATTR, TRAINED_WITH_ATTR, TrialJob, trained_with

LineSink = Callable[[str], None]
TableSink = Callable[[list[dict[str, Any]]], None]
RunTrials = Callable[[TrialJob, int, int], list[TrialRecord]]  # (job, trials, workers)
REGISTERED_ATTR = "fmnist.registered"  # on the study: the trial last written back, its version
PLOTS = (  # optuna.visualization.matplotlib function -> its image (importances' last: optional)
    ("plot_optimization_history", "optimization_history.png"),
    ("plot_intermediate_values", "val_accuracy_per_epoch.png"),
    ("plot_param_importances", "param_importances.png"),
)


@dataclass(frozen=True)
class SearchResult:
    trials: dict[str, int]  # the study's trials per state
    best: TrialRecord
    table: list[dict[str, Any]]  # every trial of the study, best first (rows)
    cost: Cost | None  # this run's trials
    registered: dict[str, Any]  # the best's registered record (registered.json)
    experiment: str | None  # the DVC experiment of the best (None: written back before)
    test_accuracy: float | None
    parent_run_id: str


def tune(
    params: Params,
    tuning: Tuning,
    name: str,
    trials: int,
    workers: int | None,
    uri: str,
    run_trials: RunTrials,
    timeout: float | None = None,
    on_line: LineSink = print,
    on_table: TableSink | None = None,
) -> SearchResult:
    """A whole run in the working folder, its data prepared (workers: default one per CPU)."""
    root = Path.cwd()
    with search_run(uri, params, tuning, name, root, trials, workers, timeout, on_line) as run:
        job, n, used = run
        results = run_trials(job, n, used) if n else []
        return finish(job, results, uri, on_line, on_table)


@contextmanager
def search_run(
    uri: str,
    params: Params,
    tuning: Tuning,
    name: str,
    root: Path,
    trials: int,
    workers: int | None,
    timeout: float | None = None,
    on_line: LineSink = print,
) -> Iterator[tuple[TrialJob, int, int]]:
    """The parent run: the trials' job, how many it adds (a sweep's: its cells still to run), on
    how many workers; its workers' runs and trials are closed if it fails."""
    from fmnist.pipeline.lineage import data_version, git_commit

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
    workers = min(workers or os.cpu_count() or 1, max(trials, 1))
    data_dir = root / layout.PREPARED
    limit = params.search.timeout if timeout is None else timeout
    stores = study_store.fingerprint(uri), study_store.fingerprint(study_store.storage_url(root))
    threads = max(1, (os.cpu_count() or 1) // workers)  # the workers share the CPUs' threads
    tags = {f"fmnist.tuning.{tuning.kind}": tuning.study}
    with tracking.tracked_run(uri, params.tracking.experiment, run_name=name, tags=tags) as run:
        flat = tracking.flatten(logged)
        tracking.load_mlflow().log_params({f"{tuning.kind}.{k}": str(v) for k, v in flat.items()})
        try:
            lineage = {
                records.DATA_TAG: data_version(root, data_dir),
                records.COMMIT_TAG: git_commit(root),
            }
            deadline = time.time() + limit if limit else None
            quiet = not console.chatter_shown()
            job = TrialJob(
                root, data_dir, params, tuning, run, *stores, lineage, threads, deadline, quiet
            )
            yield job, trials, workers
        except BaseException as exc:
            try:
                close_orphans(uri, params, tuning, root)
            except Exception as cleanup:  # the store is down too: the original error stays
                exc.add_note(f"closing its trials failed: {first_line(cleanup)}")
            raise


def close_orphans(uri: str, params: Params, tuning: Tuning, root: Path) -> None:
    """Runs and trials whose worker died (killed with the run) end KILLED and FAIL."""
    from mlflow import MlflowClient

    from fmnist.tracking.lifecycle import close_orphaned_runs

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    close_orphaned_runs(client, [experiment.experiment_id] if experiment else [])
    study_store.fail_orphans(study_store.load(root, params.search, tuning))


def study_trials(study: Any) -> list[TrialRecord]:
    """Every trial of the study as a record (a pruned one: its last reported value)."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        state = "failed" if trial.state.name == "FAIL" else trial.state.name.lower()
        value = trial.value
        if state == "pruned" and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        attrs = trial.user_attrs
        overrides = json.loads(attrs.get(OVERRIDES_ATTR, "{}"))
        trained = json.loads(attrs.get(TRAINED_WITH_ATTR, "{}"))
        error = attrs.get(study_store.ERROR_ATTR)
        out.append(
            TrialRecord(trial.number, state, value, overrides, attrs.get(RUN_ATTR), trained, error)
        )
    return out


def finish(
    job: TrialJob,
    results: Sequence[TrialRecord],
    uri: str,
    on_line: LineSink = print,
    on_table: TableSink | None = None,
) -> SearchResult:
    """The study's summary on the parent run (on_table sees its table first), the best
    written back unless it was already."""
    tuning = job.tuning
    study = study_store.load(job.root, job.params.search, tuning)
    study_store.fail_orphans(study)  # a worker that died during this run: its trial failed
    trials = study_trials(study)
    table = rows(ranked(trials), cell_name if tuning.grid else describe)
    spent = cost([(r.fit_seconds, r.overhead_seconds) for r in results])
    per_state = counts(trials)
    this_run = asdict(spent) if spent else None
    summary = {"study": tuning.study, "trials": per_state, "table": table, "this_run": this_run}
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
    registered, experiment, test_accuracy = write_back(job, study, best, uri, on_line)
    metrics = {"best_val_accuracy": float(best.val_accuracy or 0.0)}
    if test_accuracy is not None:
        metrics["best_test_accuracy"] = test_accuracy
    if spent:
        metrics["overhead_share_median"] = spent.median_share
    tracking.load_mlflow().log_metrics(metrics)
    tracking.load_mlflow().set_tags(
        {
            f"fmnist.tuning.{tuning.kind}.best_trial": str(best.number),
            "fmnist.registered.version": str(registered["version"]),
            "fmnist.registered.promotion": str(registered["promotion"]),
        }
    )
    found = (registered, experiment, test_accuracy, job.parent_run_id)
    return SearchResult(per_state, best, table, spent, *found)


def write_back(
    job: TrialJob, study: Any, best: TrialRecord, uri: str, on_line: LineSink
) -> tuple[dict[str, Any], str | None, float | None]:
    """(registered record, experiment, test accuracy) of the best as DVC experiment
    `<study>-trial-<n>-<run>` on search.refit_val_size, or `<sweep>-<optimizer>-<activation>`;
    one written back before is read back from the registry."""
    from fmnist.registry.versions import registered_record

    done = study.user_attrs.get(REGISTERED_ATTR)
    if isinstance(done, dict) and done.get("trial") == best.number:
        record = registered_record(uri, done["name"], int(done["version"]))
        on_line(
            f"best unchanged: trial {best.number} was written back as DVC experiment "
            f"{done['experiment']} and registered as v{record['version']}"
        )
        return record, None, record.get("test_accuracy")
    root, grid, parent = job.root, job.tuning.grid, job.parent_run_id
    current = load_params(root / layout.PARAMS)
    # the trial's whole model and train sections, where params.yaml says otherwise now
    dotted = (
        differences(best.trained_with, trained_with(current))
        if best.trained_with
        else dict(best.overrides)
    )
    refit = None if grid else job.params.search.refit_val_size
    if refit is not None and refit != current.prepare.val_size:
        dotted["prepare.val_size"] = refit  # chosen on validation: now more data to learn from
    load_params(root / layout.PARAMS, dotted)  # the repo's params.yaml takes them (one line if not)
    label = cell_name(best.overrides) if grid else f"trial-{best.number}-{parent[:6]}"
    name = f"{job.tuning.study}-{label}"
    env = dvc_cli.stage_env({"MLFLOW_TRACKING_URI": uri, tracking.PARENT_ENV: parent})
    ref = dvc_cli.run_experiment(root, name, set_param_args(dotted), env, on_line).ref
    written = dvc_cli.experiment_json(root, ref, layout.REGISTERED)
    record = registered_record(uri, written["name"], int(written["version"]))  # as it is now
    test_accuracy = float(dvc_cli.experiment_json(root, ref, layout.TEST_METRICS)["test_accuracy"])
    attr = {"trial": best.number, "experiment": name, "name": record["name"]}
    study.set_user_attr(REGISTERED_ATTR, attr | {"version": record["version"]})
    return record, name, test_accuracy


def log_summary(study: Any, summary: Mapping[str, Any], artifact: str) -> None:
    """The summary with Optuna's parameter importances (None while too few trials tell) as
    JSON, and the plots that can be drawn yet, under search/."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as plots
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # "few trials", "no intermediate values"
        try:
            found = optuna.importance.get_param_importances(study)
            importances = {k: round(float(v), 4) for k, v in found.items()}
        except (RuntimeError, ValueError):
            importances = None
        tracking.load_mlflow().log_dict({**summary, "param_importances": importances}, artifact)
        for function, name in PLOTS[: 3 if importances else 2]:
            try:
                axes = getattr(plots, function)(study)
            except (RuntimeError, ValueError):
                continue  # nothing to draw yet
            figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            tracking.load_mlflow().log_figure(figure, f"search/{name}", save_kwargs={"dpi": 100})
            plt.close(figure)
