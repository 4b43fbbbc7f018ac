"""The prepare stage: raw IDX files -> the three splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.data import prepare as prepare_stage
from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError


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
