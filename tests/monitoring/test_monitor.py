"""The drift check: finding the champion's training data by its hash, and Evidently's report
on features of batches that did and did not drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fmnist.data.splits import save_split
from fmnist.monitoring.drift import image_features
from fmnist.monitoring.drift_check import reference_sample, training_data
from fmnist.params.config import MonitorConfig
from fmnist.process.errors import DataIntegrityError
from tests.conftest import dvc_project, record_output, synthetic_images


def _prepared(root: Path) -> Path:
    prepared = root / "data/prepared"
    prepared.mkdir(parents=True)
    for split, seed in (("train", 1), ("val", 2), ("test", 3)):
        save_split(prepared / f"{split}.npz", *synthetic_images(120, seed=seed))
    return prepared


def _recorded(root: Path) -> tuple[Path, str]:
    """A DVC project whose dvc.lock and cache hold data/prepared, and the hash it recorded."""
    dvc_project(root, "  prepare:\n    cmd: 'false'\n    outs: [data/prepared]\n")
    prepared = _prepared(root)
    record_output(root, "prepare")
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return prepared, str(lock["stages"]["prepare"]["outs"][0]["md5"])


@pytest.mark.slow  # real dvc processes
def test_the_training_data_is_found_by_its_hash_in_the_workspace(tmp_path: Path) -> None:
    _, version = _recorded(tmp_path)
    with training_data(tmp_path, version, 3) as (path, where):
        assert path == tmp_path / "data/prepared/val.npz" and version in where
        assert "DVC cache" not in where


@pytest.mark.slow  # real dvc processes
def test_else_in_the_dvc_cache_by_the_same_hash(tmp_path: Path) -> None:
    """The workspace moved on; DVC still has the version's data in its cache."""
    prepared, version = _recorded(tmp_path)
    save_split(prepared / "val.npz", *synthetic_images(50, seed=9))
    with training_data(tmp_path, version, 3) as (path, where):
        assert "DVC cache" in where and path.read_bytes() != (prepared / "val.npz").read_bytes()
        assert np.array_equal(np.load(path)["x"], synthetic_images(120, seed=2)[0])
    assert not path.exists()  # a copy for the block only
    shutil.rmtree(tmp_path / ".dvc/cache")  # gone from the cache as well: one line
    with (
        pytest.raises(DataIntegrityError, match=r"is neither in data/prepared nor in the DVC"),
        training_data(tmp_path, version, 3),
    ):
        pass


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("unversioned", r"v3 was trained on unversioned data \('unversioned'\): no reference"),
        pytest.param(
            "0" * 32 + ".dir",
            r"v3's training data \(data/prepared md5 0{32}.dir\) is neither in ",
            marks=pytest.mark.slow,  # asks dvc for its cache
        ),
    ],
)
def test_no_reference_is_one_line(tmp_path: Path, version: str, message: str) -> None:
    _prepared(tmp_path)
    with pytest.raises(DataIntegrityError, match=message), training_data(tmp_path, version, 3):
        pass


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
    from fmnist.monitoring.drift_check import drift_report

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
