"""Lineage tags: the data's version as dvc.lock records it, and the code's commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fmnist.pipeline.lineage import UNVERSIONED, data_version, dir_md5, git_commit
from tests.conftest import GIT_IDENTITY, dvc_project, record_output

PREPARE = "  prepare:\n    cmd: 'false'\n    outs: [data/prepared]\n"


def _lock(root: Path, path: str, md5: str = "0123abcd.dir") -> None:
    out = {"path": path, "hash": "md5", "md5": md5, "nfiles": 2, "size": 8}
    stages = {"prepare": {"cmd": "fmnist prepare", "outs": [out]}}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def _data(root: Path) -> Path:
    data = root / "data" / "prepared"
    data.mkdir(parents=True)
    (data / "a.npz").write_bytes(b"12345")
    (data / "b.npz").write_bytes(b"678")
    return data


@pytest.mark.slow  # real dvc processes
def test_the_version_is_dvc_locks_hash_when_dvc_finds_the_folder_unchanged(
    tmp_path: Path,
) -> None:
    root = dvc_project(tmp_path / "p", PREPARE)
    data = _data(root)
    record_output(root, "prepare")
    recorded = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["prepare"]["outs"][0]
    assert data_version(root, data) == recorded["md5"]
    (data / "a.npz").write_bytes(b"54321")  # same size, other content
    assert data_version(root, data) == UNVERSIONED
    (data / "a.npz").write_bytes(b"12345")
    (data / "c.npz").write_bytes(b"")  # one file more
    assert data_version(root, data) == UNVERSIONED


def test_no_record_of_the_folder_is_unversioned(tmp_path: Path) -> None:
    data = _data(tmp_path)
    assert data_version(tmp_path, data) == UNVERSIONED  # no dvc.lock
    _lock(tmp_path, "data/other")  # not this folder
    assert data_version(tmp_path, data) == UNVERSIONED
    _lock(tmp_path, "data/prepared", md5="0123abcd")  # a file's hash, not a folder's
    assert data_version(tmp_path, data) == UNVERSIONED
    (tmp_path / "dvc.lock").write_text("stages: [not: {a mapping")
    assert data_version(tmp_path, data) == UNVERSIONED


def test_git_commit_says_dirty_and_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    git = ["git", *GIT_IDENTITY]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "f").write_text("a")
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = _head(tmp_path)
    assert git_commit(tmp_path) == head
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path) == f"{head}-dirty"


# A two-stage pipeline, each run's outputs new (a time stamp): `first` writes outputs kept in
# git, as train does; `second`, like train after prepare, records the commit git_commit gives
# while `dvc repro` has already rewritten dvc.lock and first's outputs.
FIRST = """\
import json, time, yaml
n = yaml.safe_load(open("params.yaml"))["n"]
open("first.json", "w").write(json.dumps({"n": n, "at": time.time_ns()}))
open("plot.csv", "w").write(f"at\\n{time.time_ns()}\\n")
"""
SECOND = """\
import json
from pathlib import Path
from fmnist.pipeline.lineage import git_commit
Path("out").mkdir(exist_ok=True)
Path("out/commit.json").write_text(json.dumps({"commit": git_commit(Path.cwd())}))
"""


def _stages(python: str) -> str:
    return (
        f"  first:\n    cmd: {python} first.py\n    deps: [first.py]\n    params: [n]\n"
        "    metrics:\n      - first.json:\n          cache: false\n"
        "    plots:\n      - plot.csv:\n          cache: false\n"
        f"  second:\n    cmd: {python} second.py\n    deps: [second.py, first.json, lib.py]\n"
        "    outs:\n      - out:\n          cache: false\n"
    )


@pytest.mark.slow  # real git and dvc processes
def test_a_run_records_the_clean_commit_unless_code_or_params_differ(tmp_path: Path) -> None:
    """The pipeline's outputs and dvc.lock are committed, as this project commits its own;
    a repro rewrites them before `second` runs, and only code or params make it dirty."""
    root = dvc_project(tmp_path / "p", _stages(sys.executable))
    (root / "params.yaml").write_text("n: 1\n")
    (root / "first.py").write_text(FIRST)
    (root / "second.py").write_text(SECOND)
    (root / "lib.py").write_text("# code the pipeline uses\n")

    def repro(*args: str) -> str:
        subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", *args], cwd=root, check=True)
        return str(json.loads((root / "out/commit.json").read_text())["commit"])

    def commit_all() -> str:
        subprocess.run(["git", *GIT_IDENTITY, "add", "-A"], cwd=root, check=True)
        subprocess.run(["git", *GIT_IDENTITY, "commit", "-qm", "run"], cwd=root, check=True)
        return _head(root)

    repro()
    head = commit_all()  # dvc.lock, first.json, plot.csv and out/ are in git now
    assert repro("--force") == head  # dvc.lock and every output rewritten: still clean
    assert {"dvc.lock", "first.json", "plot.csv"} <= _changed(root)
    (root / "params.yaml").write_text("n: 2\n")
    assert repro() == f"{head}-dirty"
    head = commit_all()
    (root / "lib.py").write_text("# code the pipeline uses, changed\n")
    assert repro() == f"{head}-dirty"
    assert git_commit(root) == f"{head}-dirty"
    subprocess.run(["git", "checkout", "-q", "lib.py"], cwd=root, check=True)
    assert git_commit(root) == head  # outputs and dvc.lock still differ from the commit


def _head(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def _changed(root: Path) -> set[str]:
    return set(
        subprocess.run(
            ["git", "diff", "--name-only", "HEAD"], cwd=root, capture_output=True, text=True,
            check=True,
        ).stdout.split()
    )  # fmt: skip


def test_dir_md5_is_what_dvc_records(tmp_path: Path) -> None:
    """The hash of a real `dvc add`ed folder, as dvc.lock and .dvc files record it."""
    data = _data(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "add", "-q", "data/prepared"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "data" / "prepared.dvc").read_text())["outs"][0]
    assert dir_md5(data) == recorded["md5"]
