"""The test metrics (pure: labels and probabilities in, numbers and a figure out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmnist_model.images import CLASS_NAMES

_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] in its cross-entropy


@dataclass(frozen=True)
class Evaluation:
    test_loss: float
    test_accuracy: float
    per_class: dict[str, dict[str, float]]  # class name -> precision, recall, f1, support
    confusion: np.ndarray  # (10, 10) int, rows = actual, columns = predicted
    predicted: np.ndarray  # (n,) predicted class per test image

    @property
    def headline(self) -> dict[str, float]:
        return {"test_loss": self.test_loss, "test_accuracy": self.test_accuracy}


def evaluate_predictions(y_true: np.ndarray, proba: np.ndarray) -> Evaluation:
    """All test metrics from labels (n,) and class probabilities (n, 10), the loss as Keras'."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(CLASS_NAMES))
    predicted = proba.argmax(axis=1)
    picked = proba[np.arange(y_true.shape[0]), y_true.astype(np.intp)]  # the true class's
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for name, p, r, f, n in zip(CLASS_NAMES, precision, recall, f1, support, strict=True)
    }
    return Evaluation(
        test_loss=float(-np.mean(np.log(np.clip(picked, _EPSILON, 1 - _EPSILON)))),
        test_accuracy=float(accuracy_score(y_true, predicted)),
        per_class=per_class,
        confusion=confusion_matrix(y_true, predicted, labels=labels),
        predicted=predicted,
    )


def flat_class_metrics(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    """{'test_precision_t-shirt_top': 0.8, ...} for trackers that take flat metric names."""
    return {
        f"test_{stat}_{name.lower().replace('/', '_').replace(' ', '_')}": float(values[stat])
        for name, values in per_class.items()
        for stat in ("precision", "recall", "f1")
    }


def confusion_figure(confusion: np.ndarray) -> Any:
    """A labelled confusion-matrix figure (matplotlib, no display needed)."""
    from matplotlib.figure import Figure  # no pyplot: nothing kept once the figure is saved

    fig = Figure(figsize=(8, 7), dpi=100)
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    ticks = np.arange(len(CLASS_NAMES))
    ax.set_xticks(ticks, CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(ticks, CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="actual", title="Fashion-MNIST test set: confusion matrix")
    threshold = confusion.max() / 2
    for (i, j), count in np.ndenumerate(confusion):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return fig
