"""The prepared splits on disk: data/prepared/{train,val,test}.npz, written and read back
checked (x float32 (n, 28, 28) in [0, 1], y uint8 (n,))."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.core.split import unscale_images
from fmnist.errors import DataIntegrityError
from fmnist.files import atomic_path
from fmnist_model.images import IMAGE_SHAPE

SPLITS = ("train", "val", "test")


def save_split(dest: Path, x: np.ndarray, y: np.ndarray) -> None:
    """x (n, 28, 28) float32, y (n,) uint8 -> an uncompressed .npz, written atomically."""
    with atomic_path(dest) as tmp, tmp.open("wb") as f:
        np.savez(f, x=x, y=y)


def load_split(path: Path, *, as_pixels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a prepared split and check it is what prepare writes: x float32 (n, 28, 28), y uint8.

    as_pixels: x comes back as the uint8 pixels prepare scaled (x == pixels / 255 exactly,
    checked), a quarter of the memory; the float32 array is read in chunks and is never whole
    in memory.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("y.npy") as f:
                y = np.lib.format.read_array(f)
            with archive.open("x.npy") as f:
                x = _read_images(f, path, as_pixels)
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: missing (run `dvc repro prepare` first)") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataIntegrityError(
            f"{path}: not a prepared split with arrays x and y ({exc})"
        ) from None
    if x.shape[0] == 0:
        raise DataIntegrityError(f"{path}: the split is empty (re-run `dvc repro prepare`)")
    if y.dtype != np.uint8 or y.shape != (x.shape[0],):
        raise DataIntegrityError(
            f"{path}: y is {y.dtype} {y.shape}, expected uint8 ({x.shape[0]},)"
        )
    return x, y


_CHUNK_ROWS = 2048  # 6.4 MB of float32 images at a time


def _read_images(f: Any, path: Path, as_pixels: bool) -> np.ndarray:
    """The x array of a split from its open .npy member, chunk by chunk."""

    version = np.lib.format.read_magic(f)
    header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran_order, dtype = header(f)
    if dtype != np.float32 or len(shape) != 3 or shape[1:] != IMAGE_SHAPE or fortran_order:
        raise DataIntegrityError(f"{path}: x is {dtype} {shape}, expected float32 (n, 28, 28)")
    out = np.empty(shape, np.uint8 if as_pixels else np.float32)
    row_values = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    for start in range(0, shape[0], _CHUNK_ROWS):
        rows = min(_CHUNK_ROWS, shape[0] - start)
        chunk = np.frombuffer(f.read(rows * row_values * dtype.itemsize), dtype=dtype)
        if chunk.size != rows * row_values:
            raise DataIntegrityError(f"{path}: x is truncated at row {start}")
        chunk = chunk.reshape(rows, *IMAGE_SHAPE)
        if as_pixels:
            try:
                chunk = unscale_images(chunk)
            except ValueError as exc:
                raise DataIntegrityError(f"{path}: x rows {start}-{start + rows}: {exc}") from None
        out[start : start + rows] = chunk
    return out
