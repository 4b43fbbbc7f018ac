"""Batch scoring (`fmnist score`, the batch-score flow's `score` task): a batch classified by a
registered version (the champion unless told), its predictions file, and an MLflow run in the
scoring experiment that says which version scored which data.

The version is resolved once, to its number, before anything is scored: the alias can move
while a batch is scored without mixing two versions in one predictions file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist import records, tracking
from fmnist.batch_input import Batch, read_batch
from fmnist.config import Params
from fmnist.core.drift import class_counts
from fmnist.errors import DataIntegrityError, TrackingError, first_line
from fmnist.files import write_text
from fmnist_model.images import CLASS_NAMES

if TYPE_CHECKING:
    from fmnist.monitor import Reference

PREDICTIONS_ARTIFACT = "predictions"
VERSION_TAG, INPUT_TAG, DIGEST_TAG = "fmnist.model_version", "fmnist.input", "fmnist.input_digest"


@dataclass(frozen=True)
class ScoringModel:
    name: str
    version: int
    run_id: str  # the training run the version came from
    data_version: str  # DVC's hash of the data/prepared it was trained on (version tag)
    model: Any  # mlflow.pyfunc.PyFuncModel

    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(n, 28, 28) uint8 -> (n, 10) probabilities, batch_size images per call."""
        parts = [
            self.model.predict(pixels[i : i + batch_size])[list(CLASS_NAMES)].to_numpy()
            for i in range(0, len(pixels), batch_size)
        ]
        return np.concatenate(parts).astype(np.float64)


@dataclass(frozen=True)
class Scored:
    run_id: str
    version: int
    rows: int
    counts: dict[str, int]
    mean_confidence: float
    predictions: Path
    input: str
    digest: str


def load_scoring_model(uri: str, name: str, version: int | None) -> ScoringModel:
    """Version `version` of the registered model, or the champion's, loaded by its number
    (fmnist.scoring.load_version, as `fmnist serve` loads it)."""
    from mlflow.exceptions import MlflowException

    from fmnist.registry import champion_version, client_for
    from fmnist.scoring import load_version

    number = champion_version(uri, name) if version is None else version
    try:
        found = client_for(uri).get_model_version(name, str(number))
    except MlflowException as exc:
        raise TrackingError(f"models:/{name}/{number}: {first_line(exc)}") from None
    model = load_version(uri, name, number).model
    data_version = str(found.tags.get(records.VERSION_DATA_TAG, ""))
    return ScoringModel(name, number, str(found.run_id), data_version, model)


def check_output(out: Path) -> None:
    if out.suffix != ".csv":
        raise DataIntegrityError(f"{out}: the predictions file must be a .csv")


@dataclass(frozen=True)
class Outcome:
    scored: Scored
    pixels: np.ndarray  # the batch's (n, 28, 28) uint8 images
    proba: np.ndarray  # (n, 10)
    reference: Reference | None  # the drift check's, when asked for


def score_input(
    params: Params,
    input_path: Path,
    out: Path,
    tracking_uri: str,
    version: int | None,
    reference_root: Path | None,
) -> Outcome:
    """`fmnist score` and the flow's `score` task: the batch read, the version loaded and,
    with reference_root, the drift reference resolved from it (fmnist.monitor), all before
    anything is written; then the batch scored (run)."""
    from fmnist import monitor  # it imports this module

    check_output(out)
    batch = read_batch(input_path)  # bad input: one line, before anything starts
    scorer = load_scoring_model(tracking_uri, params.register_.model_name, version)
    ref = None if reference_root is None else monitor.reference(params, reference_root, scorer)
    scored, proba = run(params, batch, scorer, out, tracking_uri)
    return Outcome(scored, batch.pixels, proba, ref)


def run(
    params: Params, batch: Batch, scorer: ScoringModel, out: Path, tracking_uri: str
) -> tuple[Scored, np.ndarray]:
    """Score a batch (read_batch) with a version (load_scoring_model): its predictions file
    and scoring run; returns what was scored with what, and the probabilities."""
    check_output(out)
    proba = scorer.probabilities(batch.pixels, params.score.batch_size)
    return _record(params, batch, scorer, proba, out, tracking_uri), proba


def _record(
    params: Params,
    batch: Batch,
    scorer: ScoringModel,
    proba: np.ndarray,
    out: Path,
    tracking_uri: str,
) -> Scored:
    """The predictions file, and the scoring run that holds it and says what made it."""
    from fmnist.datasets import dataset_input, log_datasets

    labels = [CLASS_NAMES[i] for i in proba.argmax(axis=1)]
    counts, confidence = class_counts(labels), float(proba.max(axis=1).mean())
    tags = {VERSION_TAG: str(scorer.version), INPUT_TAG: batch.source, DIGEST_TAG: batch.digest}
    name = Path(batch.source).name  # the dataset's name; the run's says the version too
    text = predictions_csv(batch, proba)
    with tracking.tracked_run(
        tracking_uri, params.score.experiment, run_name=name, tags=tags
    ) as rid:
        tracking.log_params(
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
        tracking.log_metrics(metrics)
        tracking.log_text(text, f"{PREDICTIONS_ARTIFACT}/{out.name}")
        digest = batch.digest.removesuffix(".dir")
        scored = dataset_input(name, batch.source, digest, "scoring", len(labels))
        log_datasets(tracking_uri, rid, [scored])
        write_text(out, text)  # last, atomically: a failed run leaves no predictions file
    return Scored(
        rid, scorer.version, len(labels), counts, confidence, out, batch.source, batch.digest
    )


def metric_key(label: str) -> str:
    """A class label as an MLflow metric name (no '/': `T-shirt/top` -> `T-shirt_top`)."""
    return label.replace("/", "_").replace(" ", "_")


def predictions_csv(batch: Batch, proba: np.ndarray) -> str:
    """input, class_id, label, probability of each class: one row per image."""
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
