"""Batch scoring: a batch classified by a version (the champion unless told), its predictions
file, and an MLflow run saying which version scored which data. The version is resolved to
its number first: the alias can move meanwhile without mixing two versions in one file."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.monitoring import drift_check
from fmnist.monitoring.batch_input import Batch, read_batch
from fmnist.monitoring.drift import class_counts
from fmnist.monitoring.scorer import Scored, load_scoring_model
from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import write_text
from fmnist.serving.loading import ServedModel
from fmnist.tracking import runs as tracking
from fmnist_model.images import CLASS_NAMES

PREDICTIONS_ARTIFACT = "predictions"
VERSION_TAG, INPUT_TAG, DIGEST_TAG = "fmnist.model_version", "fmnist.input", "fmnist.input_digest"


def check_output(out: Path) -> None:
    if out.suffix != ".csv":
        raise DataIntegrityError(f"{out}: the predictions file must be a .csv")


@dataclass(frozen=True)
class Outcome:
    scored: Scored
    pixels: np.ndarray  # the batch's (n, 28, 28) uint8 images
    proba: np.ndarray  # (n, 10)
    reference: drift_check.Reference | None  # the drift check's, when asked for


def score_input(
    params: Params,
    input_path: Path,
    out: Path,
    tracking_uri: str,
    version: int | None,
    reference_root: Path | None,
) -> Outcome:
    """The batch read, the version loaded and the drift reference (if asked) resolved before
    anything is written; then the batch scored."""
    check_output(out)
    batch = read_batch(input_path)
    scorer = load_scoring_model(tracking_uri, params.register_.model_name, version)
    ref = None if reference_root is None else drift_check.reference(params, reference_root, scorer)
    scored, proba = run(params, batch, scorer, out, tracking_uri)
    return Outcome(scored, batch.pixels, proba, ref)


def run(
    params: Params, batch: Batch, scorer: ServedModel, out: Path, tracking_uri: str
) -> tuple[Scored, np.ndarray]:
    """The batch's predictions file and scoring run: what was scored with what, (n, 10) proba."""
    from fmnist.tracking.runs import dataset_input, log_datasets

    check_output(out)
    proba = scorer.probabilities(batch.pixels, params.score.batch_size)
    labels = [CLASS_NAMES[i] for i in proba.argmax(axis=1)]
    counts, confidence = class_counts(labels), float(proba.max(axis=1).mean())
    tags = {VERSION_TAG: str(scorer.version), INPUT_TAG: batch.source, DIGEST_TAG: batch.digest}
    name = Path(batch.source).name  # the dataset's name; the run's says the version too
    text = _predictions_csv(batch, proba)
    with tracking.tracked_run(
        tracking_uri, params.score.experiment, run_name=name, tags=tags
    ) as rid:
        tracking.load_mlflow().log_params(
            {
                "model_name": scorer.name,
                "model_version": str(scorer.version),
                "model_run_id": scorer.run_id,
                "input": batch.source,
                "input_kind": batch.kind,
                "input_digest": batch.digest,
            }
        )
        metrics = {"rows": len(labels), "mean_confidence": confidence}
        metrics |= {f"count.{metric_key(k)}": v for k, v in counts.items()}
        if batch.labels is not None:  # a labelled batch (IDX pair, .npz with y): how right
            metrics["accuracy"] = float((proba.argmax(axis=1) == batch.labels).mean())
        tracking.load_mlflow().log_metrics(metrics)
        tracking.load_mlflow().log_text(text, f"{PREDICTIONS_ARTIFACT}/{out.name}")
        digest = batch.digest.removesuffix(".dir")
        dataset = dataset_input(name, batch.source, digest, "scoring", len(labels))
        log_datasets(tracking_uri, rid, [dataset])
        write_text(out, text)  # last, atomically: a failed run leaves no predictions file
    scored = Scored(
        rid, scorer.version, len(labels), counts, confidence, out, batch.source, batch.digest
    )
    return scored, proba


def metric_key(label: str) -> str:
    """A class label as an MLflow metric name (no '/': `T-shirt/top` -> `T-shirt_top`)."""
    return label.replace("/", "_").replace(" ", "_")


def _predictions_csv(batch: Batch, proba: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "class_id", "label", *CLASS_NAMES])
    for name, row in zip(batch.names, proba, strict=True):
        i = int(row.argmax())
        writer.writerow([name, i, CLASS_NAMES[i], *(f"{p:.6f}" for p in row)])
    return buffer.getvalue()


def default_output(input_path: Path) -> Path:
    """scores/<the input's file or folder name>.csv"""
    return Path("scores") / f"{input_path.resolve().name}.csv"


def report_lines(scored: Scored, experiment: str) -> list[str]:
    """What `fmnist score` prints: what was scored with what, where it went, the counts."""
    counts = ", ".join(f"{label} {n}" for label, n in scored.counts.items())
    return [
        f"scored {scored.rows} images of {scored.input} with v{scored.version}: "
        f"{scored.predictions}",
        f"  mean confidence {scored.mean_confidence:.3f}; predicted: {counts}",
        f"  MLflow run {scored.run_id} (experiment {experiment}), input md5 {scored.digest}",
    ]
