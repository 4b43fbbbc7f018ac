"""The prepare stage: data/raw's IDX files -> data/prepared/{train,val,test}.npz, the training
images split 80/20 as the tutorial does, as raw pixels (data.splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.data.idx import check_pair, parse_idx
from fmnist.data.split import split_indices
from fmnist.data.splits import save_split
from fmnist.params.config import Params
from fmnist.process.errors import DataIntegrityError

RAW_FILES = {  # split -> (images, labels) in data/raw
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def run(params: Params, raw_dir: Path, out_dir: Path) -> dict[str, int]:
    """data/prepared/{train,val,test}.npz; returns each split's size."""
    images, labels = read_raw(raw_dir, "train")  # (60000, 28, 28) uint8, (60000,) uint8
    train_rows, val_rows = split_indices(labels, params.prepare)
    parts = {
        "train": (images[train_rows], labels[train_rows]),
        "val": (images[val_rows], labels[val_rows]),
        "test": read_raw(raw_dir, "test"),
    }
    for split, (x, y) in parts.items():
        save_split(out_dir / f"{split}.npz", x, y)
    return {split: int(y.shape[0]) for split, (_, y) in parts.items()}


def read_raw(raw_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) uint8 labels of a raw split, checked."""
    arrays = []
    for name, ndim in zip(RAW_FILES[split], (3, 1), strict=True):
        path = raw_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataIntegrityError(f"{path}: missing (run `dvc repro download` first)") from None
        arrays.append(parse_idx(data, ndim=ndim, source=str(path)))
    check_pair(arrays[0], arrays[1], source=str(raw_dir / RAW_FILES[split][0]))
    return arrays[0], arrays[1]
