"""Benchmark: `fmnist search` on the real data, in a fresh copy of the project.

Two measures (issue #16):
  accuracy  `fmnist search` as a user runs it, params.yaml's space, a new study, until the
            time budget: the best trial by val_accuracy, written back as a DVC experiment,
            evaluated once on the test set and registered. Prints its configuration, val and
            test accuracy, and the wall time.
  scale     the same 5-epoch trial (the tutorial's network, 784-100-10 sigmoid, rmsprop) again
            and again at 1, 2 and 4 local Dask workers: trials per hour, and each trial's
            overhead (its wall time minus its fit) as a share of the trial.

    .venv/bin/python bench/bench_search.py accuracy --budget 2700
    .venv/bin/python bench/bench_search.py scale --trials 12
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import SHARED, workspace

GIT = ["-c", "user.name=bench", "-c", "user.email=bench@fmnist.invalid"]


def fresh(tmp: Path, mirror: str) -> tuple[Path, dict[str, str]]:
    """A committed copy of the project with its data prepared (outside the measure)."""
    ws = workspace(tmp)
    env = environment(ws, mirror)
    subprocess.run(["git", *GIT, "add", "-A"], cwd=ws, check=True)
    subprocess.run(["git", *GIT, "commit", "-qm", "bench"], cwd=ws, check=True)
    subprocess.run(["dvc", "repro", "prepare"], cwd=ws, env=env, check=True, capture_output=True)
    return ws, env


def environment(ws: Path, mirror: str) -> dict[str, str]:
    """The search's environment in workspace ws: its own MLflow store and study database."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FMNIST_DATA_MIRROR": mirror,
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}",
    }
    env.pop("FMNIST_SEARCH_STORAGE", None)
    return env


def accuracy(args: argparse.Namespace) -> None:
    if args.workspace is None:
        with tempfile.TemporaryDirectory(prefix="fmnist-bench-search-") as tmp:
            search_in(*fresh(Path(tmp), args.mirror), args)
        return
    # kept: its study (optuna.db), MLflow store and DVC experiments stay for a look, or for
    # a later run that continues the same study
    ws = args.workspace.resolve() / "repo"
    if (ws / "dvc.lock").is_file():  # made and prepared by an earlier run
        search_in(ws, environment(ws, args.mirror), args)
    elif ws.exists():
        raise SystemExit(f"{ws}: an unfinished copy (no dvc.lock); remove it and run again")
    else:
        search_in(*fresh(args.workspace.resolve(), args.mirror), args)


def search_in(ws: Path, env: dict[str, str], args: argparse.Namespace) -> None:
    """`fmnist search` in ws until the budget, printing its result lines and wall time."""
    command = ["fmnist", "search", "--trials", "1000", "--timeout", str(args.budget)]
    command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if args.workspace is not None:  # the whole output, beside the kept project copy
        log = args.workspace.resolve() / f"search-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log.write_text(done.stdout + done.stderr, encoding="utf-8")
    lines = [line for line in done.stdout.splitlines() if not line.startswith(("│", "├"))]
    print("\n".join(line for line in lines if re.match(r"(trial|best|study|this|regis|DVC)", line)))
    if done.returncode:
        raise SystemExit(f"fmnist search exited {done.returncode}: {done.stderr[-2000:]}")
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min), budget {args.budget} s for trials")


def scale(args: argparse.Namespace) -> None:
    space = {
        "layers": [1, 1], "units": [100, 100], "activations": ["sigmoid"], "dropout": [0, 0],
        "batch_norm": [False], "optimizers": ["rmsprop"], "learning_rate": [0.001, 0.001],
        "schedules": ["constant"], "batch_sizes": [32], "epochs": [5, 5],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-search-") as tmp:
        ws, env = fresh(Path(tmp), args.mirror)
        code = SCALE_RUN.format(space=space)
        for workers in args.workers_list:
            out = subprocess.run(
                [sys.executable, "-c", code, str(ws), str(workers), str(args.trials)],
                cwd=ws, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            line = next(x for x in out.stdout.splitlines() if x.startswith("SCALE "))
            _, wall, fits, overheads = line.split(" ", 3)
            fit = [float(x) for x in fits.split(",")]
            over = [float(x) for x in overheads.split(",")]
            shares = [o / (f + o) for f, o in zip(fit, over, strict=True)]
            print(
                f"{workers} workers: {len(fit)} trials in {float(wall):.1f} s = "
                f"{len(fit) / float(wall) * 3600:.0f} trials/hour; per trial fit median "
                f"{statistics.median(fit):.2f} s, overhead median {statistics.median(over):.2f} s "
                f"({statistics.median(shares):.1%} of the trial; max {max(shares):.1%})",
                flush=True,
            )


SCALE_RUN = """
import sys, time
from pathlib import Path
from fmnist.tuning import search, workers as dask
from fmnist.tuning.space import Tuning
from fmnist.params.config import load_params
from fmnist.params.overrides import apply_dotted
from fmnist.params.config import parse_params
from fmnist.tracking.mlflow_store import open_store

root, workers, trials = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
raw = load_params(root / "params.yaml").model_dump(mode="json", by_alias=True)
dotted = {{"search.space": {space}, "search.study": f"scale-{{workers}}"}}
params = parse_params(apply_dotted(raw, dotted))
uri = f"sqlite:///{{root / 'mlflow.db'}}"
open_store(uri)
tuning = Tuning(params.search.study)
with search.search_run(uri, params, tuning, f"scale-{{workers}}", root, trials, workers, 0) as run:
    job = run[0]
    started = time.perf_counter()
    results = dask.run_trials(job, trials, workers, None, lambda line: None)
    wall = time.perf_counter() - started
fits = ",".join(f"{{r.fit_seconds:.3f}}" for r in results)
over = ",".join(f"{{r.overhead_seconds:.3f}}" for r in results)
print(f"SCALE {{wall:.3f}} {{fits}} {{over}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", choices=["accuracy", "scale"])
    parser.add_argument("--mirror", default=os.environ.get("FMNIST_DATA_MIRROR", str(SHARED)))
    parser.add_argument("--budget", type=int, default=2700, help="accuracy: seconds for trials")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="accuracy")
    parser.add_argument(
        "--workspace",
        type=Path,
        help="accuracy: keep the project copy here (a later run there continues its study)",
    )
    parser.add_argument("--trials", type=int, default=12, help="scale: trials per worker count")
    parser.add_argument("--workers-list", type=int, nargs="+", default=[1, 2, 4], help="scale")
    args = parser.parse_args()
    accuracy(args) if args.mode == "accuracy" else scale(args)


if __name__ == "__main__":
    main()
