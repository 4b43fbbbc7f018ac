"""Prefect flow `fashion-mnist-batch-score`: score a batch with the champion, check it for drift
and start the retraining deployment when it drifted (wiring only, as `fmnist score`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import fmnist.monitoring.batch as batch_scoring
from fmnist.monitoring import drift_check
from fmnist.monitoring.batch import Scored
from fmnist.monitoring.drift import DriftSummary, markdown
from fmnist.params.config import Params, load_params
from fmnist.process import layout
from fmnist.tracking.mlflow_store import environment_tracking_uri

ARTIFACT_KEY = "fashion-mnist-batch-score"


@task(name="score", cache_policy=NO_CACHE)
def score(
    params: Params, input_path: Path, out: Path, uri: str, version: int | None
) -> batch_scoring.Outcome:
    """The predictions file and scoring run; a missing drift reference stops it first."""
    done = batch_scoring.score_input(params, input_path, out, uri, version, Path.cwd())
    for line in batch_scoring.report_lines(done.scored, params.score.experiment):
        get_run_logger().info(line)
    return done


@task(name="monitor", cache_policy=NO_CACHE)
def monitor(params: Params, done: batch_scoring.Outcome, uri: str) -> DriftSummary:
    """Drift against the scoring version's validation data, logged to the scoring run."""
    ref = done.reference
    assert ref is not None  # the score task resolved it: this flow always monitors
    summary = drift_check.run(params, done.scored.run_id, done.pixels, done.proba, ref, uri)
    get_run_logger().info(f"{summary.headline()} [reference: {ref.where}]")
    return summary


@task(name="retrain", cache_policy=NO_CACHE)
def retrain(deployment: str, scored: Scored, summary: DriftSummary) -> dict[str, str]:
    """Start (not await) a run of the retraining deployment; its id and name."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    started = run_deployment(
        name=deployment,
        # force: every stage runs, a new run and version, on the data DVC versions now (new
        # labelled data comes in through download/prepare); unchanged data makes the same
        # model, and the promotion rule keeps the champion
        parameters={"force": True},
        timeout=0,  # started, not awaited: training takes its own time on its own worker
        as_subflow=False,
        tags=["fmnist", "retrain-on-drift"],
    )
    assert isinstance(started, FlowRun)  # called from sync code: the run, not a coroutine
    why = f"batch {Path(scored.input).name} drifted ({len(summary.moved)} features)"
    get_run_logger().info(f"started {deployment} run {started.name} ({started.id}): {why}")
    return {"id": str(started.id), "name": started.name, "deployment": deployment}


@flow(name="fashion-mnist-batch-score")
def batch_score(
    input: str,  # the deployment's parameter, as users type it: -p input=...
    version: int | None = None,
    out: str | None = None,
    retrain_on_drift: bool = True,
) -> dict[str, Any]:
    """Score INPUT (a folder of PNGs, an IDX images file, or a .npz of raw pixels; relative to
    the project) with the champion (or VERSION); check drift; retrain when it drifted."""
    root = Path.cwd()
    params = load_params(root / layout.PARAMS)
    uri = environment_tracking_uri(root)
    input_path = root / input
    dest = root / out if out else batch_scoring.default_output(input_path)
    done = score(params, input_path, dest, uri, version)
    summary = monitor(params, done, uri)
    scored, where = done.scored, done.reference.where if done.reference else ""
    deployment = params.monitor.retrain_deployment
    started = (
        retrain(deployment, scored, summary)
        if summary.detected and retrain_on_drift and deployment
        else None
    )
    text = report(scored, summary, where, started)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=text, description="Scored batch")
    return {
        "run_id": scored.run_id,
        "version": scored.version,
        "rows": scored.rows,
        "predictions": str(scored.predictions),
        "drift": summary.detected,
        "drift_share": summary.share,
        "moved": summary.moved,
        "retraining": started,
    }


def report(
    scored: Scored, summary: DriftSummary, where: str, started: dict[str, str] | None
) -> str:
    """The flow's markdown artifact: what was scored, the drift section, what happened next."""
    counts = " | ".join(str(n) for n in scored.counts.values())
    lines = [
        f"## Scored `{Path(scored.input).name}` with v{scored.version}",
        "",
        f"{scored.rows} images, mean confidence {scored.mean_confidence:.3f}; "
        f"predictions `{scored.predictions}`; MLflow run `{scored.run_id}`.",
        "",
        "| " + " | ".join(scored.counts) + " |",
        "|" + "---|" * len(scored.counts),
        f"| {counts} |",
        "",
        markdown(summary, Path(scored.input).name, scored.rows, scored.version, where),
        "",
    ]
    if started:
        lines.append(
            f"**Retraining started**: `{started['deployment']}` run `{started['name']}` "
            f"({started['id']})."
        )
    elif summary.detected:
        lines.append(
            "Drift, but retraining is off (retrain_on_drift or monitor.retrain_deployment)."
        )
    else:
        lines.append("No retraining: the batch looks like the training data.")
    return "\n".join(lines)
