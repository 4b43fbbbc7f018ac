"""Lineage tags: the data's version as dvc.lock records it, and the code's commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from fmnist.stages.lineage import UNVERSIONED, data_version, dir_md5, git_commit


def _lock(root: Path, path: str, nfiles: int, size: int, md5: str = "0123abcd.dir") -> None:
    out = {"path": path, "hash": "md5", "md5": md5, "nfiles": nfiles, "size": size}
    stages = {"prepare": {"cmd": "fmnist prepare", "outs": [out]}}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def _data(root: Path) -> Path:
    data = root / "data" / "prepared"
    data.mkdir(parents=True)
    (data / "a.npz").write_bytes(b"12345")
    (data / "b.npz").write_bytes(b"678")
    return data


def test_the_version_is_dvc_locks_hash_when_the_folder_is_what_dvc_recorded(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    _lock(tmp_path, "data/prepared", nfiles=2, size=8, md5=dir_md5(data))
    assert data_version(tmp_path, data) == dir_md5(data)
    (data / "a.npz").write_bytes(b"54321")  # same size, other content
    assert data_version(tmp_path, data) == UNVERSIONED


def test_changed_data_or_no_record_is_unversioned(tmp_path: Path) -> None:
    data = _data(tmp_path)
    assert data_version(tmp_path, data) == UNVERSIONED  # no dvc.lock
    _lock(tmp_path, "data/prepared", nfiles=2, size=9)  # a file changed since
    assert data_version(tmp_path, data) == UNVERSIONED
    _lock(tmp_path, "data/other", nfiles=2, size=8)  # not this folder
    assert data_version(tmp_path, data) == UNVERSIONED
    (tmp_path / "dvc.lock").write_text("stages: [not: {a mapping")
    assert data_version(tmp_path, data) == UNVERSIONED


def test_git_commit_says_dirty_and_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f").write_text("a")
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_dir_md5_is_what_dvc_records(tmp_path: Path) -> None:
    """The hash of a real `dvc add`ed folder, as dvc.lock and .dvc files record it."""
    data = _data(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "add", "-q", "data/prepared"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "data" / "prepared.dvc").read_text())["outs"][0]
    assert dir_md5(data) == recorded["md5"]
