"""Prepared splits on disk: written atomically, read back checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.errors import DataIntegrityError
from fmnist.stages.splits import load_split, save_split


def test_a_split_read_as_pixels_is_what_prepare_scaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in chunks (here of 3 rows) and unscaled: the uint8 pixels, bit for bit; the float32
    read of the same file is np.load's."""
    import fmnist.stages.splits
    from fmnist.core.split import scale_images
    from tests.conftest import synthetic_images

    monkeypatch.setattr(fmnist.stages.splits, "_CHUNK_ROWS", 3)
    pixels, labels = synthetic_images(10, seed=4)
    save_split(tmp_path / "s.npz", scale_images(pixels), labels)
    x, y = load_split(tmp_path / "s.npz", as_pixels=True)
    assert x.dtype == np.uint8 and np.array_equal(x, pixels) and np.array_equal(y, labels)
    x, y = load_split(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as stored:
        assert np.array_equal(x, stored["x"]) and x.dtype == np.float32


def test_a_split_that_is_not_pixels_over_255_is_refused_as_pixels(tmp_path: Path) -> None:
    x = np.full((4, 28, 28), 0.5, np.float32)  # 127.5 / 255: no pixel
    save_split(tmp_path / "s.npz", x, np.zeros(4, np.uint8))
    with pytest.raises(DataIntegrityError, match=r"s.npz: x rows 0-4: values are not 0-255"):
        load_split(tmp_path / "s.npz", as_pixels=True)
    assert load_split(tmp_path / "s.npz")[0].shape == (4, 28, 28)  # as float32 it is fine


def test_a_truncated_split_is_one_error(tmp_path: Path) -> None:
    import zipfile

    save_split(tmp_path / "s.npz", np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8))
    with zipfile.ZipFile(tmp_path / "s.npz") as archive:
        x_npy = archive.read("x.npy")
        y_npy = archive.read("y.npy")
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as archive:
        archive.writestr("x.npy", x_npy[:-100])
        archive.writestr("y.npy", y_npy)
    with pytest.raises(DataIntegrityError, match="cut.npz: x is truncated at row 0"):
        load_split(tmp_path / "cut.npz", as_pixels=True)


def test_an_empty_split_is_one_error(tmp_path: Path) -> None:
    save_split(tmp_path / "val.npz", np.zeros((0, 28, 28), np.float32), np.zeros(0, np.uint8))
    with pytest.raises(DataIntegrityError, match=r"val.npz: the split is empty"):
        load_split(tmp_path / "val.npz")
