"""Where a model came from: the data DVC versioned and the code's commit, as tags."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import yaml

UNVERSIONED = "unversioned"  # the data is not what dvc.lock records (or there is no dvc.lock)


def data_version(root: Path, data_dir: Path) -> str:
    """DVC's hash of data_dir as dvc.lock records it (`md5: ....dir`), when the folder holds
    exactly what DVC recorded; else UNVERSIONED.

    Under `dvc repro` / `dvc exp run` a stage's inputs are in dvc.lock before the stage runs
    (DVC writes each stage's entry when it finishes, and checks unchanged ones). The record is
    checked, not trusted: the folder's content hashed as DVC hashes a directory must give the
    recorded hash (a re-prepared split of the same size would not), so a stage run by hand on
    changed data says UNVERSIONED instead of naming data it did not read.
    """
    try:
        rel = data_dir.resolve().relative_to(root.resolve()).as_posix()
        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return UNVERSIONED
    for out in _outs(lock):
        if out.get("path") == rel and str(out.get("md5", "")).endswith(".dir"):
            same = _folder_stats(data_dir) == (out.get("nfiles"), out.get("size"))
            return str(out["md5"]) if same and dir_md5(data_dir) == out["md5"] else UNVERSIONED
    return UNVERSIONED


def _outs(lock: object) -> list[dict[str, object]]:
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        return []
    found = []
    for stage in stages.values():
        outs = stage.get("outs") if isinstance(stage, dict) else None
        found += [o for o in outs or [] if isinstance(o, dict)]
    return found


def _folder_stats(folder: Path) -> tuple[int, int]:
    """(files, bytes) of a folder, as DVC counts them for a directory output."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def dir_md5(folder: Path) -> str:
    """The hash DVC 3 gives a directory output: md5 of its sorted (relpath, md5) manifest."""
    entries = sorted(
        ({"md5": _md5(p), "relpath": p.relative_to(folder).as_posix()} for p in folder.rglob("*")
         if p.is_file()),
        key=lambda e: e["relpath"],
    )  # fmt: skip
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside git."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
