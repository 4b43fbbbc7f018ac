"""The drift features and the summary of a drift report (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.monitoring.drift import (
    FEATURES,
    DriftSummary,
    FeatureDrift,
    class_counts,
    image_features,
    markdown,
    summarize,
)
from fmnist_model.images import CLASS_NAMES


def test_features_of_known_images() -> None:
    black = np.zeros((28, 28), np.uint8)
    white = np.full((28, 28), 255, np.uint8)
    half = np.zeros((28, 28), np.uint8)
    half[:14] = 255  # top half white
    proba = np.eye(10)[[0, 9, 3]] * 0.7 + 0.03  # rows sum to 1, confidence 0.73
    f = image_features(np.stack([black, white, half]), proba)
    assert list(f) == list(FEATURES)
    assert f["mean_intensity"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert f["intensity_spread"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    assert f["dark_share"].tolist() == [1.0, 0.0, 0.5]
    assert f["bright_share"].tolist() == [0.0, 1.0, 0.5]
    assert f["confidence"].tolist() == pytest.approx([0.73] * 3)
    assert f["predicted_class"].tolist() == [CLASS_NAMES[0], CLASS_NAMES[9], CLASS_NAMES[3]]


def test_features_refuse_mismatched_predictions() -> None:
    with pytest.raises(ValueError, match="3 images but 2 predictions"):
        image_features(np.zeros((3, 28, 28), np.uint8), np.full((2, 10), 0.1))


def _report(distances: dict[str, float], threshold: float = 0.1) -> dict:
    metrics = [{"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {}}]
    metrics += [
        {
            "config": {
                "type": "evidently:metric_v2:ValueDrift",
                "column": name,
                "method": "Wasserstein distance (normed)",
                "threshold": threshold,
            },
            "value": value,
        }
        for name, value in distances.items()
    ]
    return {"metrics": metrics}


def test_summary_counts_features_at_or_past_the_threshold() -> None:
    distances = dict.fromkeys(FEATURES, 0.01) | {"dark_share": 0.1, "mean_intensity": 2.5}
    summary = summarize(_report(distances), drift_share=0.5)
    assert summary.moved == ["mean_intensity", "dark_share"]  # in FEATURES order
    assert summary.share == pytest.approx(2 / 6) and not summary.detected
    assert summary.headline() == (
        "no drift: 2 of 6 features drifted (share 0.33 < 0.5): mean_intensity, dark_share"
    )
    assert summarize(_report(distances), drift_share=0.3).detected


def test_detected_at_exactly_the_share_and_never_without_features() -> None:
    distances = dict.fromkeys(FEATURES[:3], 1.0) | dict.fromkeys(FEATURES[3:], 0.0)
    summary = summarize(_report(distances), drift_share=0.5)
    assert summary.detected and summary.headline().startswith("drift: 3 of 6 features")
    assert not DriftSummary((), 0.5).detected


def test_markdown_has_a_row_per_feature() -> None:
    summary = DriftSummary((FeatureDrift("dark_share", "Wasserstein", 0.25, 0.1),), 0.5)
    text = markdown(summary, "shifted.npz", 100, 3, "data/prepared (md5 x.dir)")
    assert text.startswith("### drift: 1 of 1 features drifted")
    assert "| dark_share | Wasserstein | 0.2500 | 0.1 | **yes** |" in text
    assert "v3's training data (data/prepared (md5 x.dir))" in text


def test_class_counts_name_every_class() -> None:
    counts = class_counts([CLASS_NAMES[1], CLASS_NAMES[1], CLASS_NAMES[9]])
    assert list(counts) == list(CLASS_NAMES)
    assert counts[CLASS_NAMES[1]] == 2 and counts[CLASS_NAMES[9]] == 1 and sum(counts.values()) == 3
