"""The drift check of a scored batch (`fmnist score`, the batch-score flow's `monitor` task):
the batch against a sample of the champion's training split, per image feature
(fmnist.core.drift), with Evidently's data drift preset; its HTML report and the summary go
to the batch's scoring run.

The reference is the validation split of the data the version was trained on, found by the
hash the version records (its `data.prepared` tag, DVC's hash of data/prepared): in the
workspace when data/prepared hashes to it, else in the DVC cache by that hash. Validation, not
train: the model never fitted it, so its confidence there is what it is on new data of the
same kind (on its own training images it is higher, and every batch would look drifted).
Nothing else is compared with: another version's data would answer another question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist import layout, tracking
from fmnist.config import MonitorConfig, Params
from fmnist.core.drift import CATEGORICAL, NUMERICAL, DriftSummary, image_features, summarize
from fmnist.errors import DataIntegrityError
from fmnist.score import Scored, ScoringModel

REPORT_ARTIFACT = "drift"
REFERENCE_FILE = "val.npz"


@dataclass(frozen=True)
class Reference:
    """The sample of the training data a batch is compared with, as features."""

    features: dict[str, np.ndarray]
    rows: int
    where: str  # which file, found where


def reference(params: Params, root: Path, scorer: ScoringModel) -> Reference:
    """The version's validation split (sampled), with the version's own view of it. Resolved
    before a batch is scored: a missing reference stops `fmnist score` before anything."""
    path, where = training_data(root, scorer.data_version, scorer.version)
    pixels = reference_sample(path, params.monitor)
    proba = scorer.probabilities(pixels, params.score.batch_size)
    return Reference(image_features(pixels, proba), len(pixels), where)


def training_data(root: Path, data_version: str, version: int) -> tuple[Path, str]:
    """The validation split of the data the version was trained on, and where it was found."""
    from fmnist.stages.lineage import dir_md5

    if not data_version.endswith(".dir"):
        raise DataIntegrityError(
            f"v{version} was trained on unversioned data ({data_version!r}): no reference"
        )
    prepared = root / layout.PREPARED
    if prepared.is_dir() and dir_md5(prepared) == data_version:
        return prepared / REFERENCE_FILE, f"{layout.PREPARED}/{REFERENCE_FILE} (md5 {data_version})"
    missing = DataIntegrityError(
        f"v{version}'s training data ({layout.PREPARED} md5 {data_version}) is neither in "
        f"{layout.PREPARED} nor in the DVC cache (`dvc checkout` or `dvc pull` it)"
    )
    cache = cache_files(root)
    try:
        entries = json.loads(_in_cache(cache, data_version).read_text(encoding="utf-8"))
        md5 = next(e["md5"] for e in entries if e["relpath"] == REFERENCE_FILE)
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        raise missing from None
    found = _in_cache(cache, md5)
    if not found.is_file():
        raise missing
    where = f"the DVC cache ({layout.PREPARED}/{REFERENCE_FILE} of md5 {data_version})"
    return found, where


def cache_files(root: Path) -> Path:
    """Where DVC keeps file contents by md5: `dvc cache dir` (a shared or external cache
    included), then DVC 3's `files/md5`; the default cache if DVC cannot say."""
    default = root / ".dvc" / "cache"
    try:
        said = subprocess.run(
            [sys.executable, "-m", "dvc", "cache", "dir"],
            cwd=root, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        cache = Path(said.stdout.strip() or default)
    except (OSError, subprocess.SubprocessError):
        cache = default
    return cache / "files" / "md5"


def _in_cache(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def reference_sample(path: Path, cfg: MonitorConfig) -> np.ndarray:
    """reference_rows images of the train split, drawn without replacement (seeded)."""
    from fmnist.stages.splits import load_split

    pixels, _ = load_split(path)
    if len(pixels) <= cfg.reference_rows:
        return pixels
    rows = np.random.default_rng(cfg.seed).choice(len(pixels), cfg.reference_rows, replace=False)
    return pixels[np.sort(rows)]


def drift_report(
    current: dict[str, np.ndarray], reference: dict[str, np.ndarray], cfg: MonitorConfig
) -> tuple[DriftSummary, Any]:
    """Evidently's data drift preset on the features: (summary, the report's snapshot).
    Distances only (Wasserstein normed, Jensen-Shannon), whatever the batch's size, so a
    feature has drifted at distance >= feature_threshold."""
    import pandas as pd

    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry, were it ever reached
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=list(NUMERICAL), categorical_columns=list(CATEGORICAL)
    )
    preset = DataDriftPreset(
        drift_share=cfg.drift_share,
        num_method="wasserstein",
        cat_method="jensenshannon",
        threshold=cfg.feature_threshold,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference), data_definition=definition),
    )
    rows = len(next(iter(current.values())))
    return summarize(snapshot.dict(), cfg.drift_share, rows, cfg.min_rows), snapshot


def run(
    params: Params,
    scored: Scored,
    pixels: np.ndarray,
    proba: np.ndarray,
    ref: Reference,
    tracking_uri: str,
) -> DriftSummary:
    """The batch's drift against the reference, logged to the scoring run (metrics, the HTML
    report, the summary)."""
    summary, snapshot = drift_report(image_features(pixels, proba), ref.features, params.monitor)
    metrics = {"drift_share": summary.share, "drift_detected": float(summary.detected)}
    metrics |= {"drift_judged": float(summary.judged)}
    metrics |= {f"drift.{f.feature}": f.distance for f in summary.features}
    with tempfile.TemporaryDirectory(prefix="fmnist-drift-") as tmp:
        html = Path(tmp) / "drift_report.html"
        snapshot.save_html(str(html))
        tracking.log_to_run(
            tracking_uri,
            scored.run_id,
            metrics=metrics,
            dicts={f"{REPORT_ARTIFACT}/summary.json": _summary_json(summary, ref.where, ref.rows)},
            files=[(html, REPORT_ARTIFACT)],
        )
    return summary


def _summary_json(summary: DriftSummary, reference: str, rows: int) -> dict[str, Any]:
    return {
        "headline": summary.headline(),
        "detected": summary.detected,
        "judged": summary.judged,
        "rows": summary.rows,
        "min_rows": summary.min_rows,
        "share": summary.share,
        "drift_share": summary.drift_share,
        "moved": summary.moved,
        "reference": reference,
        "reference_rows": rows,
        "features": [{**asdict(f), "drifted": f.drifted} for f in summary.features],
    }
