"""Scale and split, exactly as the tutorial does, without its float64 copies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmnist.config import PrepareConfig
from fmnist_model.images import scale_images  # the served model scales with it too


@dataclass(frozen=True)
class Split:
    """One split: x (n, 28, 28) float32 in [0, 1], y (n,) uint8."""

    x: np.ndarray
    y: np.ndarray


def unscale_images(scaled: np.ndarray) -> np.ndarray:
    """float32 pixels / 255 -> the uint8 pixels they were scaled from (a quarter of the memory).

    Exact: scale_images(unscale_images(x)) == x bit for bit; a value that is not k / 255 for
    an integer k in 0..255 (or is NaN) raises ValueError, so nothing is silently rounded.
    """
    pixels = np.rint(scaled * np.float32(255.0)).clip(0, 255).astype(np.uint8)
    if not np.array_equal(scale_images(pixels), scaled):
        raise ValueError("values are not 0-255 pixels / 255")
    return pixels


def split_indices(labels: np.ndarray, cfg: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train/val row indices, the very permutation train_test_split(x, y, ...) applies."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(labels.shape[0])
    train_rows, val_rows = train_test_split(
        rows,
        test_size=cfg.val_size,
        random_state=cfg.seed,
        stratify=labels if cfg.stratify else None,
    )
    return train_rows, val_rows


def make_split(images: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> Split:
    """Select rows (all when None) of uint8 images and scale only those: one float32 copy."""
    if rows is None:
        return Split(scale_images(images), labels.astype(np.uint8, copy=True))
    return Split(scale_images(images[rows]), labels[rows].astype(np.uint8))
