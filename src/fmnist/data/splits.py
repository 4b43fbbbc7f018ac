"""The prepared splits: data/prepared/{train,val,test}.npz, written and read back checked. Raw
uint8 pixels, not x / 255: the model's input step scales them (scale_images) everywhere alike,
and the files hold a quarter of float32's bytes to write, hash, cache and read."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import atomic_path
from fmnist_model.images import CLASS_NAMES, IMAGE_SHAPE


def save_split(dest: Path, x: np.ndarray, y: np.ndarray) -> None:
    """x (n, 28, 28) uint8, y (n,) uint8 -> an uncompressed .npz, written atomically."""
    with atomic_path(dest) as tmp, tmp.open("wb") as f:
        np.savez(f, x=x, y=y)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x uint8 (n, 28, 28) pixels, y uint8 (n,) labels 0-9 from a prepared split, checked."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["x"], archive["y"]
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: missing (run `dvc repro prepare` first)") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataIntegrityError(
            f"{path}: not a prepared split with arrays x and y ({exc})"
        ) from None
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DataIntegrityError(
            f"{path}: x is {x.dtype} {x.shape}, expected uint8 (n, 28, 28) raw pixels "
            "(re-run `dvc repro prepare`)"
        )
    if x.shape[0] == 0:
        raise DataIntegrityError(f"{path}: the split is empty (re-run `dvc repro prepare`)")
    if y.dtype != np.uint8 or y.shape != (x.shape[0],):
        raise DataIntegrityError(
            f"{path}: y is {y.dtype} {y.shape}, expected uint8 ({x.shape[0]},)"
        )
    if y.max() >= len(CLASS_NAMES):
        raise DataIntegrityError(f"{path}: a label is {int(y.max())}, expected 0-9")
    return x, y
