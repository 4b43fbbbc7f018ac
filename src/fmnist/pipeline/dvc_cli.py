"""DVC driven through its CLI (it has no Python API for repro): stages and experiments, for the
flows and the sweep, so unchanged stages are skipped and every output stays versioned. What a
run did is read from DVC's records (`dvc exp show --json`, dvc.lock), never from its output."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

import psutil
import yaml

from fmnist.pipeline.lineage import LOCK, stages
from fmnist.process.errors import DataIntegrityError, StageError
from fmnist.process.stopping import terminate

LineSink = Callable[[str], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRORS = (re.compile(r"^fmnist \w+: error: "), re.compile(r"^ERROR: "))  # the stage's, DVC's


def clean_line(raw: str) -> str:
    """What a terminal would show: the text after the last carriage return, no colours."""
    return _ANSI.sub("", raw.rstrip("\n").split("\r")[-1]).rstrip()


def failure_line(lines: list[str], command: str, returncode: int) -> str:
    """The stage's own one-line error if it printed one, else DVC's, else the exit code."""
    for pattern in _ERRORS:
        found = [line for line in lines if pattern.match(line)]
        if found:
            return found[-1]
    return f"{command} exited with {returncode}" + (f": {lines[-1]}" if lines else "")


def stage_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with its own bin/ first on PATH (dvc.yaml calls `fmnist`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def run_dvc(args: list[str], root: Path, env: Mapping[str, str], on_line: LineSink = print) -> None:
    """Run `dvc ARGS` in root, streaming its output lines; a failure raises StageError."""
    tail: deque[str] = deque(maxlen=400)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", *args], cwd=root, env=dict(env), stdout=PIPE, stderr=STDOUT
    ) as proc:
        assert proc.stdout is not None
        try:
            # Split on "\n" only: Keras redraws its progress bar with "\r"; keep the last draw.
            lines = io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="\n")
            for raw in lines:
                if line := clean_line(raw):
                    tail.append(line)
                    on_line(line)
        except BaseException:  # interrupted: stop DVC and its stage (its MLflow run ends KILLED)
            with contextlib.suppress(psutil.NoSuchProcess):
                top = psutil.Process(proc.pid)
                terminate([*top.children(recursive=True), top], timeout=30)
            raise
    if proc.returncode:
        raise StageError(failure_line(list(tail), f"dvc {' '.join(args)}", proc.returncode))


def reproduce(root: Path, stage: str, env: Mapping[str, str], on_line: LineSink = print) -> None:
    """`dvc repro STAGE` in the workspace, waiting for DVC's repo lock instead of failing."""
    run_dvc(["--wait-for-lock", "repro", stage], root, env, on_line)


@dataclass(frozen=True)
class ExperimentRun:
    """A finished `dvc exp run`: its name, commit, and which stages' dvc.lock records changed."""

    name: str
    ref: str  # the experiment's commit (`git show REF:path`)
    changed: tuple[str, ...] = ()  # recorded anew: DVC ran them or restored them (run cache)
    unchanged: tuple[str, ...] = ()  # the baseline's: nothing changed


def lock_changes(before: Any, after: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(changed, unchanged): after's dvc.lock stages, by whether their entry differs."""
    old, new = stages(before), stages(after)
    changed = tuple(stage for stage, entry in new.items() if old.get(stage) != entry)
    return changed, tuple(stage for stage in new if stage not in changed)


def run_experiment(
    root: Path,
    name: str,
    set_params: list[str],
    env: Mapping[str, str],
    on_line: LineSink = print,
    *,
    force: bool = False,
) -> ExperimentRun:
    """`dvc exp run --temp` in a private copy, the workspace left as it was; several may run at
    once (each holds the repo lock only to set up and collect); force runs every stage."""
    force_arg = ["--force"] if force else []
    args = ["--wait-for-lock", "exp", "run", "--temp", *force_arg, "--name", name, *set_params]
    run_dvc(args, root, env, on_line)
    rev, baseline = find_experiment(root, name)
    return ExperimentRun(name, rev, *lock_changes(_lock_at(root, baseline), _lock_at(root, rev)))


def find_experiment(root: Path, name: str) -> tuple[str, str]:
    """(commit, baseline commit) of finished experiment NAME, from `dvc exp show --json`."""
    args = ["exp", "show", "--json", "--hide-workspace", "--hide-queued", "--hide-failed"]
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise StageError(failure_line(done.stderr.splitlines(), f"dvc {' '.join(args)}", 1))
    for baseline in json.loads(done.stdout):
        for exp in baseline.get("experiments") or []:
            done_running = (exp.get("executor") or {}).get("state", "success") == "success"
            if exp.get("name") == name and done_running and exp.get("revs"):
                return str(exp["revs"][0]["rev"]), str(baseline["rev"])
    raise StageError(f"DVC experiment {name!r} not found (`dvc exp show` does not list it)")


def _lock_at(root: Path, rev: str) -> Any:
    """dvc.lock as commit rev holds it; None when it holds none (nothing recorded yet)."""
    try:
        return yaml.safe_load(experiment_file(root, rev, LOCK))
    except StageError:
        return None


def experiment_file(root: Path, ref: str, path: Path | str) -> str:
    """A git-tracked file (metrics, records) as the experiment committed it."""
    args = ["show", f"{ref}:{Path(path).as_posix()}"]
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        raise StageError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def experiment_json(root: Path, ref: str, path: Path | str) -> Any:
    """A JSON file (metrics, records) as the experiment committed it."""
    try:
        return json.loads(experiment_file(root, ref, path))
    except json.JSONDecodeError as exc:
        raise DataIntegrityError(f"{ref}:{Path(path).as_posix()}: not valid JSON ({exc})") from None
