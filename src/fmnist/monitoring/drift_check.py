"""The drift check of a scored batch (Evidently's data drift preset, logged to the scoring run)
against the validation split the version was trained on, found by the DVC hash it records. Not
train: on its training images the model is more confident, so every batch would look drifted."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fmnist.monitoring.drift import CATEGORICAL, NUMERICAL, DriftSummary, image_features, summarize
from fmnist.params.config import MonitorConfig, Params
from fmnist.process import layout
from fmnist.process.errors import DataIntegrityError
from fmnist.serving.loading import ServedModel
from fmnist.tracking import runs as tracking

REPORT_ARTIFACT = "drift"
REFERENCE_FILE = "val.npz"


@dataclass(frozen=True)
class Reference:
    """The sample of the training data a batch is compared with, as features."""

    features: dict[str, np.ndarray]
    rows: int
    where: str  # which file, found where


def reference(params: Params, root: Path, scorer: ServedModel) -> Reference:
    """The version's validation split (sampled) as features, with the version's view of it."""
    with training_data(root, scorer.data_version, scorer.version) as (path, where):
        pixels = reference_sample(path, params.monitor)
    proba = scorer.probabilities(pixels, params.score.batch_size)
    return Reference(image_features(pixels, proba), len(pixels), where)


@contextlib.contextmanager
def training_data(root: Path, data_version: str, version: int) -> Iterator[tuple[Path, str]]:
    """The validation split the version was trained with, as a file, and where it was found."""
    from fmnist.pipeline.lineage import data_version as recorded_version

    if not data_version.endswith(".dir"):
        raise DataIntegrityError(
            f"v{version} was trained on unversioned data ({data_version!r}): no reference"
        )
    prepared = root / layout.PREPARED
    if recorded_version(root, prepared) == data_version:
        yield prepared / REFERENCE_FILE, f"{layout.PREPARED}/{REFERENCE_FILE} (md5 {data_version})"
        return
    with tempfile.TemporaryDirectory(prefix="fmnist-reference-") as tmp:
        found = Path(tmp) / REFERENCE_FILE
        if not _copy_cached(root, data_version, REFERENCE_FILE, found):
            raise DataIntegrityError(
                f"v{version}'s training data ({layout.PREPARED} md5 {data_version}) is neither "
                f"in {layout.PREPARED} nor in the DVC cache (`dvc checkout` or `dvc pull` it)"
            )
        yield found, f"the DVC cache ({layout.PREPARED}/{REFERENCE_FILE} of md5 {data_version})"


def _copy_cached(root: Path, dir_md5: str, name: str, dest: Path) -> bool:
    """Copy file NAME of the directory DVC hashed to dir_md5 from the DVC cache (read through a
    throwaway project whose one .dvc file names it) to dest; False when the cache lacks it."""
    from dvc.api import DVCFileSystem

    cache = root / ".dvc" / "cache"  # `dvc cache dir` names it (a shared cache too)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        said = subprocess.run(
            [sys.executable, "-m", "dvc", "cache", "dir"],
            cwd=root, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        cache = Path(said.stdout.strip() or cache)
    with tempfile.TemporaryDirectory(prefix="fmnist-dvc-") as tmp:
        project = Path(tmp)
        (project / ".dvc").mkdir()
        out = {"md5": dir_md5, "hash": "md5", "path": "data"}  # DVC 3's hashes (`hash: md5`)
        (project / "data.dvc").write_text(yaml.safe_dump({"outs": [out]}), encoding="utf-8")
        config = {"core": {"no_scm": True, "site_cache_dir": str(project / ".dvc" / "site")}}
        fs = DVCFileSystem(str(project), config={**config, "cache": {"dir": str(cache)}})
        with contextlib.closing(fs):
            if not fs.isfile(f"data/{name}"):  # the directory's listing is not in the cache
                return False
            try:
                fs.get_file(f"data/{name}", str(dest))
            except FileNotFoundError:  # listed, but the file's content is not in the cache
                return False
    return True


def reference_sample(path: Path, cfg: MonitorConfig) -> np.ndarray:
    """reference_rows images of the train split, drawn without replacement (seeded)."""
    from fmnist.data.splits import load_split

    pixels, _ = load_split(path)
    if len(pixels) <= cfg.reference_rows:
        return pixels
    rows = np.random.default_rng(cfg.seed).choice(len(pixels), cfg.reference_rows, replace=False)
    return pixels[np.sort(rows)]


def drift_report(
    current: dict[str, np.ndarray], reference: dict[str, np.ndarray], cfg: MonitorConfig
) -> tuple[DriftSummary, Any]:
    """Evidently's data drift preset on the features: (summary, snapshot). Distances only
    (Wasserstein, Jensen-Shannon) whatever the batch's size: drifted at >= the threshold."""
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
    run_id: str,
    pixels: np.ndarray,
    proba: np.ndarray,
    ref: Reference,
    tracking_uri: str,
) -> DriftSummary:
    """The batch's drift against the reference, logged to the scoring run."""
    summary, snapshot = drift_report(image_features(pixels, proba), ref.features, params.monitor)
    metrics = {"drift_share": summary.share, "drift_detected": float(summary.detected)}
    metrics |= {"drift_judged": float(summary.judged)}
    metrics |= {f"drift.{f.feature}": f.distance for f in summary.features}
    with tempfile.TemporaryDirectory(prefix="fmnist-drift-") as tmp:
        html = Path(tmp) / "drift_report.html"
        snapshot.save_html(str(html))
        said = ("detected", "judged", "rows", "min_rows", "share", "drift_share", "moved")
        summary_json = {
            "headline": summary.headline(),
            **{key: getattr(summary, key) for key in said},
            "reference": ref.where,
            "reference_rows": ref.rows,
            "features": [{**asdict(f), "drifted": f.drifted} for f in summary.features],
        }
        tracking.log_to_run(
            tracking_uri,
            run_id,
            metrics=metrics,
            dicts={f"{REPORT_ARTIFACT}/summary.json": summary_json},
            files=[(html, REPORT_ARTIFACT)],
        )
    return summary
