import numpy as np
import pytest
from sklearn.metrics import log_loss

from fmnist.training.metrics import (
    CLASS_NAMES,
    cross_entropy,
    evaluate_predictions,
    flat_class_metrics,
)


def probabilities(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Class probabilities that put 0.9 on the true class where `right`, else on the next one."""
    n = labels.shape[0]
    proba = np.full((n, 10), 0.1 / 9)
    target = np.where(right, labels, (labels + 1) % 10)
    proba[np.arange(n), target] = 0.9
    return proba


def test_metrics() -> None:
    labels = np.arange(100) % 10
    right = np.arange(100) < 80
    result = evaluate_predictions(labels, probabilities(labels, right))
    assert result.test_accuracy == pytest.approx(0.8)
    assert result.test_loss == pytest.approx(
        log_loss(labels, probabilities(labels, right)), rel=1e-6
    )
    assert result.confusion.shape == (10, 10) and result.confusion.sum() == 100
    assert np.trace(result.confusion) == 80
    assert list(result.per_class) == list(CLASS_NAMES)
    assert result.per_class["Bag"]["support"] == 10


def test_cross_entropy_clips_like_keras() -> None:
    proba = np.zeros((1, 10))
    proba[0, 3] = 1.0
    assert cross_entropy(np.array([0]), proba) == pytest.approx(-np.log(1e-7))


def test_flat_names() -> None:
    flat = flat_class_metrics(
        {"T-shirt/top": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 3}}
    )
    assert flat == {
        "test_precision_t-shirt_top": 1.0,
        "test_recall_t-shirt_top": 0.5,
        "test_f1_t-shirt_top": 0.6,
    }
