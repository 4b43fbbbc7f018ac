"""Drift of a scored batch, the pure part: per-image features (brightness, contrast, shares of
background and highlight, the model's class and confidence), and what a drift report says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_model.images import CLASS_NAMES

DARK_BELOW = 32  # pixel values 0-31: background (Fashion-MNIST's is 0, black)
BRIGHT_FROM = 224  # pixel values 224-255: highlight
NUMERICAL = ("mean_intensity", "intensity_spread", "dark_share", "bright_share", "confidence")
CATEGORICAL = ("predicted_class",)
FEATURES = (*NUMERICAL, *CATEGORICAL)


def image_features(pixels: np.ndarray, proba: np.ndarray) -> dict[str, np.ndarray]:
    """(n, 28, 28) uint8 pixels and the model's (n, 10) probabilities -> one column per feature
    (intensities on 0-1, shares of the image's 784 pixels, the class as its label)."""
    if pixels.shape[0] != proba.shape[0]:
        raise ValueError(f"{pixels.shape[0]} images but {proba.shape[0]} predictions")
    flat = pixels.reshape(pixels.shape[0], -1)
    scaled = flat.astype(np.float32) / np.float32(255.0)
    return {
        "mean_intensity": scaled.mean(axis=1),
        "intensity_spread": scaled.std(axis=1),
        "dark_share": (flat < DARK_BELOW).mean(axis=1),
        "bright_share": (flat >= BRIGHT_FROM).mean(axis=1),
        "confidence": proba.max(axis=1).astype(np.float64),
        "predicted_class": np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)],
    }


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    method: str
    distance: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.distance >= self.threshold  # distances: at or past the threshold


@dataclass(frozen=True)
class DriftSummary:
    features: tuple[FeatureDrift, ...]
    drift_share: float  # the share of features that must drift (params: monitor.drift_share)
    rows: int = 0  # images in the batch
    min_rows: int = 0  # fewer are not judged: distances of small samples are mostly noise

    @property
    def judged(self) -> bool:
        return self.rows >= self.min_rows

    @property
    def moved(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share(self) -> float:
        return len(self.moved) / len(self.features) if self.features else 0.0

    @property
    def detected(self) -> bool:
        return self.judged and bool(self.features) and self.share >= self.drift_share

    def headline(self) -> str:
        """One line: drift or not, how many features moved, which."""
        counted = f"{len(self.moved)} of {len(self.features)} features drifted"
        moved = f": {', '.join(self.moved)}" if self.moved else ""
        if not self.judged:
            few = f"{self.rows} images < monitor.min_rows {self.min_rows}"
            return f"not judged: too few images ({few}); {counted}{moved}"
        over = self.share >= self.drift_share
        rule = f"share {self.share:.2f} {'>=' if over else '<'} {self.drift_share}"
        return f"{'drift' if self.detected else 'no drift'}: {counted} ({rule}){moved}"


def summarize(
    report: Mapping[str, Any], drift_share: float, rows: int = 0, min_rows: int = 0
) -> DriftSummary:
    """An Evidently report's dict (its ValueDrift metrics) -> DriftSummary. Only distance
    methods are configured, so "drifted" is distance >= threshold for every feature."""
    found = [
        FeatureDrift(
            str(config["column"]),
            str(config.get("method", "")),
            float(metric["value"]),
            float(config["threshold"]),
        )
        for metric in report.get("metrics", [])
        if str((config := metric.get("config", {})).get("type", "")).endswith(":ValueDrift")
    ]
    features = tuple(sorted(found, key=lambda f: FEATURES.index(f.feature)))
    return DriftSummary(features, drift_share, rows, min_rows)


def markdown(summary: DriftSummary, batch: str, rows: int, version: int, reference: str) -> str:
    """The drift section of the batch-score flow's artifact: headline and per-feature table."""
    lines = [
        f"### {summary.headline()}",
        "",
        f"Batch `{batch}` ({rows} images) against v{version}'s training data ({reference}).",
        "",
        "| feature | method | distance | threshold | drifted |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.feature} | {f.method} | {f.distance:.4f} | {f.threshold} | "
        f"{'**yes**' if f.drifted else 'no'} |"
        for f in summary.features
    ]
    return "\n".join(lines)


def class_counts(labels: Sequence[str]) -> dict[str, int]:
    """Predicted labels -> count per class, every class present (0 when none)."""
    return {name: labels.count(name) for name in CLASS_NAMES}
