"""The drift check: finding the champion's training data by its hash, and Evidently's report
on features of batches that did and did not drift."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fmnist.config import MonitorConfig
from fmnist.core.drift import image_features
from fmnist.errors import DataIntegrityError
from fmnist.monitor import reference_sample, training_data
from fmnist.stages.lineage import dir_md5
from fmnist.stages.splits import save_split
from tests.conftest import synthetic_images


def _prepared(root: Path) -> Path:
    prepared = root / "data/prepared"
    prepared.mkdir(parents=True)
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        save_split(prepared / f"{split}.npz", *synthetic_images(120, seed=seed))
    return prepared


def test_the_training_data_is_found_by_its_hash_in_the_workspace(tmp_path: Path) -> None:
    version = dir_md5(_prepared(tmp_path))
    path, where = training_data(tmp_path, version, 3)
    assert path == tmp_path / "data/prepared/val.npz" and version in where


def test_else_in_the_dvc_cache_by_the_same_hash(tmp_path: Path) -> None:
    """As DVC 3 stores a directory: <md5>.dir lists the files, each stored under its md5."""
    prepared = _prepared(tmp_path)
    version = dir_md5(prepared)
    cache = tmp_path / ".dvc/cache/files/md5"
    entries = []
    for f in sorted(prepared.iterdir()):
        md5 = hashlib.md5(f.read_bytes()).hexdigest()
        (cache / md5[:2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, cache / md5[:2] / md5[2:])
        entries.append({"md5": md5, "relpath": f.name})
    (cache / version[:2]).mkdir(parents=True, exist_ok=True)
    (cache / version[:2] / version[2:]).write_text(json.dumps(entries))
    save_split(prepared / "val.npz", *synthetic_images(50, seed=9))  # the workspace moved on
    path, where = training_data(tmp_path, version, 3)
    assert "DVC cache" in where and path.read_bytes() != (prepared / "val.npz").read_bytes()
    assert np.array_equal(np.load(path)["x"], synthetic_images(120, seed=2)[0])


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("unversioned", r"v3 was trained on unversioned data \('unversioned'\): no reference"),
        ("0" * 32 + ".dir", r"v3's training data \(data/prepared md5 0{32}.dir\) is neither in "),
    ],
)
def test_no_reference_is_one_line(tmp_path: Path, version: str, message: str) -> None:
    _prepared(tmp_path)
    with pytest.raises(DataIntegrityError, match=message):
        training_data(tmp_path, version, 3)


def test_the_reference_is_a_seeded_sample(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path)
    cfg = MonitorConfig(reference_rows=100, seed=1)
    a, b = (reference_sample(prepared / "train.npz", cfg) for _ in range(2))
    assert a.shape == (100, 28, 28) and np.array_equal(a, b)
    assert len(reference_sample(prepared / "train.npz", MonitorConfig(reference_rows=500))) == 120


def _features(pixels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    proba = np.random.default_rng(seed).dirichlet(np.ones(10) * 0.3, size=len(pixels))
    return image_features(pixels, proba)


@pytest.mark.slow  # Evidently's import alone takes ~6 s
def test_evidently_tells_a_shifted_batch_from_a_fresh_sample(tmp_path: Path) -> None:
    from fmnist.monitor import drift_report

    cfg = MonitorConfig(min_rows=1000)
    reference = _features(synthetic_images(3000, seed=1)[0], 1)
    same, _ = synthetic_images(1500, seed=2)
    summary, snapshot = drift_report(_features(same, 2), reference, cfg)
    assert not summary.detected and summary.share < 0.5, summary.headline()
    brighter = np.clip(same.astype(np.int16) + 80, 0, 255).astype(np.uint8)
    summary, _ = drift_report(_features(brighter, 2), reference, cfg)
    assert summary.detected, summary.headline()
    assert {"mean_intensity", "dark_share"} <= set(summary.moved)
    small, _ = drift_report(_features(brighter[:200], 2), reference, cfg)
    assert not small.detected and small.headline().startswith("not judged: too few images")
    snapshot.save_html(str(tmp_path / "r.html"))
    assert "<html" in (tmp_path / "r.html").read_text()[:2000].lower()
