"""Where a model came from: the data DVC versioned and the code's commit, as tags."""

from __future__ import annotations

import hashlib
import json
import posixpath
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fmnist.process.files import file_digest

UNVERSIONED = "unversioned"  # the data is not what dvc.lock records (or there is no dvc.lock)
LOCK = "dvc.lock"


def stages(spec: object) -> dict[str, dict[str, Any]]:
    """The stage entries of a parsed dvc.lock or dvc.yaml, by name."""
    found = spec.get("stages") if isinstance(spec, dict) else None
    if not isinstance(found, dict):
        return {}
    return {name: stage for name, stage in found.items() if isinstance(stage, dict)}


def data_version(root: Path, data_dir: Path) -> str:
    """DVC's hash of data_dir as dvc.lock records it, when the folder holds exactly that; else
    UNVERSIONED. Checked, not trusted (`dvc data status`): a stage run by hand on changed data
    must not name data it did not read."""
    try:
        rel = data_dir.resolve().relative_to(root.resolve()).as_posix()
        lock = yaml.safe_load((root / LOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return UNVERSIONED
    outs = [o for s in stages(lock).values() for o in s.get("outs") or [] if isinstance(o, dict)]
    recorded = [o.get("md5") for o in outs if o.get("path") == rel]
    if len(recorded) != 1 or not str(recorded[0]).endswith(".dir"):
        return UNVERSIONED
    try:
        said = subprocess.run(
            [sys.executable, "-m", "dvc", "data", "status", "--json", rel],
            cwd=root, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        status = json.loads(said.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return UNVERSIONED
    unchanged = isinstance(status, dict) and not status.get("uncommitted")
    return str(recorded[0]) if unchanged else UNVERSIONED


def dir_md5(folder: Path) -> str:
    """The hash DVC 3 gives a directory output: md5 of its sorted (relpath, md5) manifest."""
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())
    entries = [{"md5": file_digest(p), "relpath": rel} for rel, p in files]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def git_commit(root: Path) -> str:
    """HEAD's commit, '-dirty' when a tracked file differs; 'unknown' outside git. What DVC
    writes (dvc.lock, declared outputs) does not count: an earlier stage of the same repro
    rewrote those, and the commit's code and params still made the run."""

    def git(*args: str) -> str:
        return subprocess.check_output(["git", *args], cwd=root, text=True, stderr=subprocess.PIPE)

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("diff", "--name-only", "--no-renames", "--relative", "-z", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    written = _written_by_dvc(root)
    for path in filter(None, changed.split("\0")):
        if not any(path == out or path.startswith(f"{out}/") for out in written):
            return f"{commit}-dirty"
    return commit


def _written_by_dvc(root: Path) -> set[str]:
    """dvc.lock and every output dvc.yaml declares, as paths relative to root."""
    try:
        spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        spec = None
    written = {LOCK}
    for stage in stages(spec).values():
        wdir = str(stage.get("wdir", "."))
        for field in ("outs", "metrics", "plots"):
            for entry in stage.get(field) or []:  # a path, or {path: its options}
                path = next(iter(entry), None) if isinstance(entry, dict) else entry
                if isinstance(path, str):
                    written.add(posixpath.normpath(posixpath.join(wdir, path)))
    return written
