"""The tutorial's split of its training images, kept as raw uint8 pixels (see data.splits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmnist.params.config import PrepareConfig


@dataclass(frozen=True)
class Split:
    """One split: x (n, 28, 28) uint8 raw pixels 0-255, y (n,) uint8 labels."""

    x: np.ndarray
    y: np.ndarray


def split_indices(labels: np.ndarray, cfg: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train/val row indices, the very permutation train_test_split(x, y, ...) applies."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(labels.shape[0])
    stratify = labels if cfg.stratify else None
    train_rows, val_rows = train_test_split(
        rows, test_size=cfg.val_size, random_state=cfg.seed, stratify=stratify
    )
    return train_rows, val_rows


def make_split(images: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> Split:
    """Rows (all when None) of uint8 images and their labels, as uint8 copies."""
    picked = slice(None) if rows is None else rows
    return Split(images[picked].astype(np.uint8), labels[picked].astype(np.uint8))
