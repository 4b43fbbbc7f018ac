"""What git holds of the pipeline is what the current code and params produce.

`dvc.lock` and the small outputs kept in git (metrics, plots, the Keras summary, the run and
registration records) must come from the committed code: a fresh clone's `dvc status` shows
no changed code or param, and a fresh `dvc repro` reproduces every metric, plot and summary
byte for byte. Only per-run identifiers may differ: MLflow run and model ids, the version
number, the git commit a run was made at, and the hashes of the files holding them
(`models/model.keras` also holds the save date Keras writes into it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import copy_repo, make_runner

pytestmark = [pytest.mark.integration]

BYTE_IDENTICAL = (
    "metrics/train.json",
    "metrics/evaluate.json",
    "metrics/classes.json",
    "plots/train_history.csv",
    "plots/confusion.csv",
    "plots/confusion.png",
    "models/summary.txt",
)
PER_RUN_KEYS = {
    "models/trained.json": {"run_id", "model_uri", "model_id", "fmnist.git.commit"},
    "models/registered.json": {"run_id", "version"},
}
PER_RUN_FILES = {"models/model.keras", *PER_RUN_KEYS}  # their hashes in dvc.lock may differ


def drifted_deps(status: dict[str, Any], outputs: set[str]) -> list[str]:
    """`dvc status --json` entries that say code or params changed. A dep that is another
    stage's output (data, the model) says only what this workspace holds: missing on a
    fresh clone, another save's bytes after a local run; that is not drift."""
    drifted = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                drifted.append(f"{stage}: {change}")
                continue
            for path, state in change.get("changed deps", {}).items():
                if isinstance(state, dict) or path not in outputs:
                    drifted.append(f"{stage}: {path} {state}")
    return drifted


def _outputs(dvc_yaml: Path) -> set[str]:
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    found = set()
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                found.add(out if isinstance(out, str) else next(iter(out)))
    return found


def test_drift_is_told_from_missing_data() -> None:
    outputs = {"data/raw", "data/prepared"}
    status = {
        "prepare": [{"changed deps": {"data/raw": "deleted"}}, {"changed outs": {"x": "deleted"}}],
        "train": [
            {"changed deps": {"data/prepared": "modified", "src/fmnist/train.py": "modified"}}
        ],
        "evaluate": [{"changed deps": {"params.yaml": {"evaluate.batch_size": "modified"}}}],
        "register": ["changed command"],
    }
    assert drifted_deps(status, outputs) == [
        "train: src/fmnist/train.py modified",
        "evaluate: params.yaml {'evaluate.batch_size': 'modified'}",
        "register: changed command",
    ]


def test_the_committed_lock_matches_the_code_and_params() -> None:
    """On this checkout (CI: a fresh clone), before anything runs."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    drifted = drifted_deps(json.loads(done.stdout or "{}"), _outputs(REPO / "dvc.yaml"))
    assert not drifted, (
        "dvc.lock is not what the code and params produce; run `make run` on a clean "
        "checkout with a new mlflow.db and commit dvc.lock and the outputs:\n" + "\n".join(drifted)
    )


def _lock_without_per_run_hashes(lock: dict[str, Any]) -> dict[str, Any]:
    def strip(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"path": e["path"]} if e["path"] in PER_RUN_FILES else e for e in entries or []]

    return {
        name: {k: strip(v) if k in ("deps", "outs") else v for k, v in stage.items()}
        for name, stage in lock["stages"].items()
    }


@pytest.mark.slow
def test_a_fresh_repro_reproduces_the_committed_outputs(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    kept = ["dvc.lock", *BYTE_IDENTICAL, *PER_RUN_KEYS]
    for name in kept:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    run = make_runner(repo)
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "committed outputs")
    run("dvc", "repro")  # a new MLflow store in the copy: the first version, as on a clone

    changed = [n for n in BYTE_IDENTICAL if (repo / n).read_bytes() != (REPO / n).read_bytes()]
    assert not changed, f"the pipeline now produces other {changed}: commit its outputs"
    for name, per_run in PER_RUN_KEYS.items():
        ours, committed = (json.loads(Path(r, name).read_text()) for r in (repo, REPO))
        differ = {k for k in ours.keys() | committed.keys() if ours.get(k) != committed.get(k)}
        assert differ <= per_run, f"{name}: {sorted(differ - per_run)} changed"
    lock, committed_lock = (yaml.safe_load(Path(r, "dvc.lock").read_text()) for r in (repo, REPO))
    assert _lock_without_per_run_hashes(lock) == _lock_without_per_run_hashes(committed_lock)
