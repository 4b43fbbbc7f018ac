"""The prepare stage: raw IDX files -> the three splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmnist.data import prepare as prepare_stage
from fmnist.data.split import split_indices
from fmnist.data.splits import load_split
from fmnist.params.config import Params, PrepareConfig
from fmnist.process.errors import DataIntegrityError
from fmnist_model.images import scale_images
from tests.conftest import synthetic_images


def test_prepare_writes_the_three_splits(prepared_dir: Path, raw_arrays: dict) -> None:
    x_train, y_train = load_split(prepared_dir / "train.npz")
    x_val, _ = load_split(prepared_dir / "val.npz")
    x_test, y_test = load_split(prepared_dir / "test.npz")
    assert (x_train.shape[0], x_val.shape[0], x_test.shape[0]) == (240, 60, 100)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8  # raw pixels
    assert np.array_equal(y_test, raw_arrays["test"][1])
    assert sorted(p.name for p in prepared_dir.iterdir()) == ["test.npz", "train.npz", "val.npz"]


def test_prepare_rejects_bad_raw_files(tmp_path: Path, raw_dir: Path, tiny_params: Params) -> None:
    (raw_dir / "train-labels-idx1-ubyte").write_bytes(
        (raw_dir / "train-labels-idx1-ubyte").read_bytes()[:-1]
    )
    with pytest.raises(DataIntegrityError, match="truncated"):
        prepare_stage.run(tiny_params, raw_dir, tmp_path / "prepared")
    (raw_dir / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataIntegrityError, match="missing"):
        prepare_stage.run(tiny_params, raw_dir, tmp_path / "prepared")


def test_scaling_is_bit_equal_to_the_tutorials_float64_way() -> None:
    every_byte = np.arange(256, dtype=np.uint8).repeat(4).reshape(1, 32, 32)
    ours = scale_images(every_byte)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, (every_byte / 255.0).astype(np.float32))
    assert ours.min() == 0.0 and ours.max() == 1.0


@pytest.mark.parametrize("val_size", [0.2, 0.35])
def test_split_scaled_as_fed_is_the_tutorials_train_test_split_exactly(val_size: float) -> None:
    """The tutorial scales, then splits; the splits keep pixels and the model's input step
    scales them: the values the model sees are the tutorial's, bit for bit (as float32)."""
    images, labels = synthetic_images(200, seed=5)
    cfg = PrepareConfig(val_size=val_size, seed=42)
    train_rows, val_rows = split_indices(labels, cfg)
    x_train_raw, x_val_raw = images[train_rows], images[val_rows]
    x_train, x_val, y_train, y_val = train_test_split(
        images / 255.0, labels, test_size=val_size, random_state=42
    )
    assert x_train_raw.dtype == np.uint8 and x_train_raw.shape[1:] == (28, 28)
    assert np.array_equal(scale_images(x_train_raw), x_train.astype(np.float32))
    assert np.array_equal(scale_images(x_val_raw), x_val.astype(np.float32))
    assert np.array_equal(labels[train_rows], y_train) and np.array_equal(labels[val_rows], y_val)


def test_stratified_split_keeps_class_shares() -> None:
    _, labels = synthetic_images(200, seed=6)
    _, val_rows = split_indices(labels, PrepareConfig(val_size=0.2, seed=1, stratify=True))
    assert np.bincount(labels[val_rows], minlength=10).tolist() == [4] * 10
