"""The sweep: plan the grid, run one training, finish (compare, register the best). Both
`fmnist sweep` (threads, `run`) and the Prefect flow `fashion-mnist-sweep` (Dask tasks)
call these; what wins and how the table reads is fmnist.tuning.grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.params.config import Params
from fmnist.params.overrides import RunOverrides
from fmnist.pipeline import dvc_cli, records
from fmnist.process import layout
from fmnist.process.errors import FmnistError, StageError, first_line
from fmnist.tracking import runs as tracking
from fmnist.tuning.grid import (
    Outcome,
    Training,
    best,
    comparison_rows,
    grid,
    reuse_note,
    training_overrides,
)

TARGET = "evaluate"  # a sweep's trainings stop here: only the best is registered


@dataclass(frozen=True)
class PlannedTraining:
    """One training of a sweep, its DVC experiment name and `--set-param`s."""

    training: Training
    experiment: str
    set_params: list[str]


@dataclass(frozen=True)
class SweepResult:
    rows: list[dict[str, Any]]  # the comparison, best first
    registered: dict[str, Any]  # the best training's registered record (registered.json)


def plan(
    root: Path,
    sweep_name: str,
    optimizers: Sequence[str],
    activations: Sequence[str],
    base: RunOverrides,
) -> list[PlannedTraining]:
    """The grid, every cell validated against params.yaml before any training starts."""
    return [
        PlannedTraining(
            t, f"{sweep_name}-{t.name}", dvc_cli.set_params_for(root, training_overrides(t, base))
        )
        for t in grid(optimizers, activations)
    ]


def run_training(
    root: Path,
    planned: PlannedTraining,
    parent_run_id: str,
    env: Mapping[str, str],
    tracking_uri: str,
    on_line: dvc_cli.LineSink = print,
) -> Outcome:
    """prepare -> train -> evaluate as DVC experiment planned.experiment, its MLflow run a
    child of parent_run_id; a failure raises (StageError) and fails that child run only.

    When DVC reused an earlier training (same data, code and params: no new MLflow run), the
    store shows it (the run is not the parent's child): a small child run then links the
    parent to it, and the outcome and the cell's log say `reused run R`."""
    ref = dvc_cli.run_experiment(
        root,
        planned.experiment,
        planned.set_params,
        {**env, tracking.PARENT_ENV: parent_run_id},
        on_line,
        targets=(TARGET,),
    ).ref
    trained = _trained(root, ref)
    run_id = trained["run_id"]
    last_epoch = dvc_cli.experiment_json(root, ref, layout.TRAIN_METRICS)
    tested = dvc_cli.experiment_json(root, ref, layout.TEST_METRICS)
    metrics = {
        "val_accuracy": float(last_epoch["val_accuracy"]),
        "val_loss": float(last_epoch["val_loss"]),
        "test_accuracy": float(tested["test_accuracy"]),
        "test_loss": float(tested["test_loss"]),
    }
    note = reuse_note(run_id)
    name = planned.training.name
    reused = tracking.link_reused_run(tracking_uri, parent_run_id, name, run_id, metrics, note)
    if reused:
        on_line(note)
    return Outcome(
        planned.training,
        experiment=planned.experiment,
        run_id=run_id,
        val_accuracy=metrics["val_accuracy"],
        val_loss=metrics["val_loss"],
        test_accuracy=metrics["test_accuracy"],
        test_loss=metrics["test_loss"],
        fit_seconds=tracking.run_metrics(tracking_uri, run_id).get("fit_seconds"),
        reused_from=run_id if reused else None,
    )


def _trained(root: Path, ref: str) -> dict[str, Any]:
    """The trained record as experiment ref committed it, every key present."""
    record = dvc_cli.experiment_json(root, ref, layout.TRAINED)
    return records.checked_trained(record, f"{ref}:{layout.TRAINED.as_posix()}")


def failed_training(planned: PlannedTraining, exc: BaseException) -> Outcome:
    """The outcome of a training that raised: its one-line error."""
    return Outcome(planned.training, experiment=planned.experiment, error=first_line(exc))


def finish(
    params: Params, root: Path, outcomes: Sequence[Outcome], tracking_uri: str
) -> SweepResult:
    """Log the comparison to the (active) parent run, register the best training's model (by
    validation accuracy) and apply the promotion rule (test accuracy against the champion's).
    Every training failed: StageError, nothing registered."""
    from fmnist.registry.register import register_trained

    rows = comparison_rows(outcomes)
    tracking.log_dict({"trainings": rows}, tracking.SWEEP_ARTIFACT)
    failed = [o for o in outcomes if not o.ok]
    tracking.log_metrics({"trainings": len(outcomes), "failed": len(failed)})
    winner = best(outcomes)
    if winner is None:
        raise StageError(f"every training of the sweep failed; first: {failed[0].error}")
    ref = dvc_cli.experiment_ref(root, str(winner.experiment))
    record = register_trained(
        params,
        _trained(root, ref),
        dvc_cli.experiment_json(root, ref, layout.TEST_METRICS),
        dvc_cli.experiment_file(root, ref, layout.SUMMARY),
        tracking_uri,
    )
    tracking.log_metrics(
        {
            "best_val_accuracy": float(winner.val_accuracy or 0.0),  # what chose it
            "best_test_accuracy": float(winner.test_accuracy or 0.0),  # what promotion compares
        }
    )
    tracking.set_tags(
        {
            "fmnist.tuning.sweep.best": winner.training.name,
            "fmnist.tuning.sweep.best_run_id": str(winner.run_id),
            "fmnist.registered.version": str(record["version"]),
            "fmnist.registered.promotion": record["promotion"],
        }
    )
    return SweepResult(rows, record)


def run(
    params: Params,
    root: Path,
    sweep_name: str,
    planned: Sequence[PlannedTraining],
    jobs: int,
    tracking_uri: str,
    on_line: dvc_cli.LineSink = print,
) -> SweepResult:
    """The sweep without Prefect (`fmnist sweep`): up to `jobs` trainings at a time."""
    from concurrent.futures import ThreadPoolExecutor

    env = dvc_cli.stage_env({"MLFLOW_TRACKING_URI": tracking_uri})
    # The data once, in the workspace: every training restores it from DVC's cache.
    dvc_cli.reproduce(root, "prepare", env, on_line)
    experiment = params.tracking.experiment
    with tracking.sweep_run(tracking_uri, experiment, sweep_name, planned) as parent:

        def one(cell: PlannedTraining) -> Outcome:
            def tagged(line: str) -> None:
                on_line(f"[{cell.training.name}] {line}")

            try:
                return run_training(root, cell, parent, env, tracking_uri, tagged)
            except FmnistError as exc:
                tagged(f"failed: {first_line(exc)}")
                return failed_training(cell, exc)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(one, planned))
        return finish(params, root, outcomes, tracking_uri)
