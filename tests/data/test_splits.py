"""Prepared splits on disk: written atomically, read back checked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from fmnist.data.splits import load_split, save_split
from fmnist.process.errors import DataIntegrityError
from tests.conftest import synthetic_images


def test_a_split_reads_back_as_written(tmp_path: Path) -> None:
    pixels, labels = synthetic_images(10, seed=4)
    save_split(tmp_path / "s.npz", pixels, labels)
    x, y = load_split(tmp_path / "s.npz")
    assert x.dtype == np.uint8 and np.array_equal(x, pixels) and np.array_equal(y, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary left


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8), "x is float32"),  # scaled
        (np.zeros((4, 784), np.uint8), np.zeros(4, np.uint8), r"x is uint8 \(4, 784\)"),
        (np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.uint8), r"y is uint8 \(3,\)"),
        (np.zeros((4, 28, 28), np.uint8), np.full(4, 10, np.uint8), "a label is 10"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "the split is empty"),
    ],
)
def test_what_prepare_does_not_write_is_refused(
    tmp_path: Path, x: np.ndarray, y: np.ndarray, message: str
) -> None:
    save_split(tmp_path / "s.npz", x, y)
    with pytest.raises(DataIntegrityError, match=rf"s.npz: {message}"):
        load_split(tmp_path / "s.npz")


def test_a_truncated_split_is_one_error(tmp_path: Path) -> None:
    save_split(tmp_path / "s.npz", np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with zipfile.ZipFile(tmp_path / "s.npz") as archive:
        x_npy = archive.read("x.npy")
        y_npy = archive.read("y.npy")
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as archive:
        archive.writestr("x.npy", x_npy[:-100])
        archive.writestr("y.npy", y_npy)
    with pytest.raises(DataIntegrityError, match="cut.npz: not a prepared split"):
        load_split(tmp_path / "cut.npz")
    (tmp_path / "none.npz").write_text("not a zip")
    with pytest.raises(DataIntegrityError, match="none.npz: not a prepared split"):
        load_split(tmp_path / "none.npz")
    with pytest.raises(DataIntegrityError, match="gone.npz: missing"):
        load_split(tmp_path / "gone.npz")
