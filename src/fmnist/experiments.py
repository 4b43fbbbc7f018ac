"""DVC driven through its CLI (it has no Python API for repro): stages and experiments.

Used by the Prefect flows: they never run stage logic themselves, DVC does, so unchanged
stages are skipped and every output stays versioned.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.errors import DataIntegrityError, StageError

LineSink = Callable[[str], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OUR_ERROR = re.compile(r"^fmnist \w+: error: ")


def clean_line(raw: str) -> str:
    """What a terminal would show: the text after the last carriage return, no colours."""
    return _ANSI.sub("", raw.rstrip("\n").split("\r")[-1]).rstrip()


def failure_line(lines: list[str], command: str, returncode: int) -> str:
    """The stage's own one-line error if it printed one, else DVC's, else the exit code."""
    for pattern in (_OUR_ERROR, re.compile(r"^ERROR: ")):
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
    command = ["dvc", *args]
    tail: deque[str] = deque(maxlen=400)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        assert proc.stdout is not None
        # Split on "\n" only: Keras redraws its progress bar with "\r"; keep the last draw.
        for raw in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="\n"):
            line = clean_line(raw)
            if line:
                tail.append(line)
                on_line(line)
        returncode = proc.wait()
    if returncode:
        raise StageError(failure_line(list(tail), " ".join(command), returncode))


def reproduce(root: Path, stage: str, env: Mapping[str, str], on_line: LineSink = print) -> None:
    """`dvc repro STAGE` in the workspace, waiting for DVC's repo lock instead of failing."""
    run_dvc(["--wait-for-lock", "repro", stage], root, env, on_line)


def run_experiment(
    root: Path,
    name: str,
    set_params: list[str],
    env: Mapping[str, str],
    on_line: LineSink = print,
    targets: Sequence[str] = (),
) -> str:
    """`dvc exp run --temp`: the pipeline (up to targets, else all of it) in a private copy;
    returns the experiment ref.

    The user's workspace (params.yaml, outputs, dvc.lock) is left as it was; the results
    live in the experiment (`dvc exp show`, `dvc exp apply NAME`) and in the DVC cache.
    Several may run at once: each waits its turn for the repo lock only while DVC sets up
    and collects, and trains in its own copy.
    """
    args = ["--wait-for-lock", "exp", "run", "--temp", "--name", name, *set_params, *targets]
    run_dvc(args, root, env, on_line)
    return experiment_ref(root, name)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        raise StageError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def experiment_ref(root: Path, name: str) -> str:
    """The git ref DVC keeps experiment NAME under, for the current baseline commit."""
    head = _git(root, "rev-parse", "HEAD").strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    if not _git(root, "for-each-ref", "--format=%(refname)", ref).strip():
        raise StageError(f"DVC experiment {name!r} not found (no {ref})")
    return ref


def experiment_file(root: Path, ref: str, path: str) -> str:
    """A git-tracked file (metrics, run records) as the experiment committed it."""
    return _git(root, "show", f"{ref}:{path}")


def experiment_json(root: Path, ref: str, path: str) -> Any:
    """A JSON file (metrics, run records) as the experiment committed it."""
    try:
        return json.loads(experiment_file(root, ref, path))
    except json.JSONDecodeError as exc:
        raise DataIntegrityError(f"{ref}:{path}: not valid JSON ({exc})") from None


@dataclass(frozen=True)
class ExperimentReport:
    """What a finished experiment registered, for the flow's artifacts."""

    markdown: str
    epochs: list[dict[str, float]]
    version: int
    run_id: str


def report_experiment(root: Path, ref: str) -> ExperimentReport:
    """The experiment's registered version, metrics, history and summary, as it committed them.

    All read from the experiment's commit (small git-tracked outputs), no tracking server
    round trip: the report shows exactly what this run produced.
    """
    from fmnist.report import epoch_rows, model_markdown

    registered = experiment_json(root, ref, "models/registered.json")
    run = experiment_json(root, ref, "models/run.json")
    markdown = model_markdown(
        model_display_name=run["fmnist.model.name"],
        summary=experiment_file(root, ref, "models/summary.txt"),
        metrics=experiment_json(root, ref, "metrics/evaluate.json"),
        registered=registered,
        experiment=ref.rsplit("/", 1)[-1],
    )
    epochs = epoch_rows(experiment_file(root, ref, "plots/train_history.csv"))
    return ExperimentReport(markdown, epochs, int(registered["version"]), registered["run_id"])
