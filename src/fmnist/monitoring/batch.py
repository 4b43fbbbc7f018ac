"""Batch scoring: a batch (a folder of images, an IDX images file with its labels file beside it,
or a `.npz` of raw pixels `x`, `y` optional) read whole and checked, classified by a version
resolved to its number first (the alias can move meanwhile), its predictions file, and an MLflow
run saying which version scored which data (the digest DVC gives the path)."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.data.idx import check_pair, parse_idx
from fmnist.monitoring import drift_check
from fmnist.monitoring.drift import class_counts
from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import file_digest, write_text
from fmnist.serving.loading import ServedModel, load_champion
from fmnist.tracking import runs as tracking
from fmnist_model.images import CLASS_NAMES, check_pixels

PREDICTIONS_ARTIFACT = "predictions"
VERSION_TAG, INPUT_TAG, DIGEST_TAG = "fmnist.model_version", "fmnist.input", "fmnist.input_digest"
MAX_IDX_BYTES = 1 << 30  # a decompressed IDX file past 1 GiB (1.3 M images) is refused
IDX_IMAGES, IDX_LABELS = "-images-idx3-ubyte", "-labels-idx1-ubyte"


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


@dataclass(frozen=True)
class Batch:
    pixels: np.ndarray  # (n, 28, 28) uint8 raw pixels
    names: list[str]  # one per image: its file, or `<file>#<row>`
    source: str  # the path as given, resolved
    digest: str  # DVC's hash of that path
    kind: str  # "images", "idx" or "npz"
    labels: np.ndarray | None = None  # (n,) when the input carries them: scoring's accuracy


def read_batch(path: Path) -> Batch:
    """The batch at PATH (folder, IDX file or .npz), checked."""
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise DataIntegrityError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        return _read_npz(path)
    return _read_idx(path)


def _read_folder(folder: Path) -> Batch:
    from fmnist.pipeline.lineage import dir_md5
    from fmnist.serving.image_files import read_image

    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if folders := [e for e in entries if not e.is_file()]:
        raise DataIntegrityError(f"{folders[0]}: a folder inside the batch (mixed input)")
    if not entries:
        raise DataIntegrityError(f"{folder}: no images in the folder")
    pixels = np.stack([read_image(p)[0] for p in entries])  # names the file it cannot read
    return Batch(
        pixels, [p.name for p in entries], str(folder.resolve()), dir_md5(folder), "images"
    )


def _read_npz(path: Path) -> Batch:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise DataIntegrityError(
                    f"{path}: expected an array `x` of raw pixels (found {', '.join(names)})"
                )
            x = archive[key]
            y = archive["y"] if "y" in names and key == "x" else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataIntegrityError(f"{path}: not a .npz of raw pixels ({exc})") from None
    try:
        pixels = check_pixels(x)
    except ValueError as exc:
        raise DataIntegrityError(f"{path}: `{key}`: {exc}") from None
    if len(pixels) == 0:
        raise DataIntegrityError(f"{path}: no images in `{key}`")
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (len(pixels),):
            raise DataIntegrityError(
                f"{path}: `y` is {y.dtype} {y.shape}, expected ({len(pixels)},)"
            )
        check_pair(pixels, y, str(path))
        y = y.astype(np.uint8)
    names = [f"{path.name}#{i}" for i in range(len(pixels))]
    return Batch(pixels, names, str(path.resolve()), file_digest(path), "npz", y)


def _read_idx(path: Path) -> Batch:
    images = parse_idx(_idx_bytes(path), ndim=3, source=str(path))
    if len(images) == 0:
        raise DataIntegrityError(f"{path}: no images in the file")
    labels = None
    labels_path = path.with_name(path.name.replace(IDX_IMAGES, IDX_LABELS))
    if labels_path != path and labels_path.is_file():
        labels = parse_idx(_idx_bytes(labels_path), ndim=1, source=str(labels_path))
    check_pair(images, labels if labels is not None else np.zeros(len(images), np.uint8), str(path))
    names = [f"{path.name}#{i}" for i in range(len(images))]
    return Batch(np.array(images), names, str(path.resolve()), file_digest(path), "idx", labels)


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if gzip (at most MAX_IDX_BYTES)."""
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataIntegrityError(f"{path}: not a readable IDX or .gz file ({exc})") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataIntegrityError(f"{path}: over {MAX_IDX_BYTES >> 20} MiB decompressed")
    return data


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
    scorer = load_champion(tracking_uri, params.register_.model_name, version)
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
        # a class label as an MLflow metric name: no '/' (`T-shirt/top` -> `T-shirt_top`)
        metrics |= {f"count.{k.replace('/', '_').replace(' ', '_')}": v for k, v in counts.items()}
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
