"""The tutorial's split of its training images (pure: labels and params in, row indices out)."""

from __future__ import annotations

import numpy as np

from fmnist.params.config import PrepareConfig


def split_indices(labels: np.ndarray, cfg: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train/val row indices, the very permutation train_test_split(x, y, ...) applies."""
    from sklearn.model_selection import train_test_split

    stratify = labels if cfg.stratify else None
    rows = np.arange(labels.shape[0])
    train_rows, val_rows = train_test_split(
        rows, test_size=cfg.val_size, random_state=cfg.seed, stratify=stratify
    )
    return train_rows, val_rows
