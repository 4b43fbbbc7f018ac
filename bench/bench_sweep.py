"""Benchmark: the 8-training sweep against 8 x one training, and where a training's time goes.

In a scratch copy of the project (data downloaded and prepared once, as a user's repo has it):
one training of the grid (`dvc exp run --temp ... evaluate`, rmsprop-sigmoid) timed `--rounds`
times; then `fmnist sweep --jobs N` for each N of `--jobs` (the grid: 4 optimizers x 2
activations, params.yaml's epochs unless `--epochs`). Prints medians, the ratio
sweep / (8 x one training), and a breakdown of one training from its own logs and a few
direct measurements (TensorFlow import, data loading, fit, the rest).

    .venv/bin/python bench/bench_sweep.py                  # jobs 1 and 2, 5 epochs
    .venv/bin/python bench/bench_sweep.py --jobs 1 2 4 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import SHARED, workspace

GRID = 8


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return wall, done.stdout + done.stderr


def python_seconds(code: str, cwd: Path, env: dict[str, str]) -> float:
    wall, _ = timed([sys.executable, "-c", code], cwd, env)
    return wall


def prepared_workspace(root: Path, env: dict[str, str]) -> Path:
    """bench_train's scratch copy, committed, with the data downloaded and prepared."""
    ws = workspace(root)
    for args in (["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        timed(args, ws, env)
    timed(["dvc", "repro", "prepare"], ws, env)
    timed(["git", "add", "-A"], ws, env)
    timed(["git", "commit", "-qm", "data"], ws, env)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="single trainings timed")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--mirror", default=os.environ.get("FMNIST_DATA_MIRROR", str(SHARED)))
    args = parser.parse_args()
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    set_epochs = ["-S", f"train.epochs={args.epochs}"] if args.epochs else []

    with tempfile.TemporaryDirectory(prefix="fmnist-bench-sweep-") as tmp:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "FMNIST_DATA_MIRROR": args.mirror,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@fmnist.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@fmnist.invalid",
        }  # fmt: skip
        env.pop("MLFLOW_TRACKING_URI", None)
        ws = prepared_workspace(Path(tmp), env)
        singles, fits = [], []
        for i in range(args.rounds):
            wall, out = timed(
                ["dvc", "--wait-for-lock", "exp", "run", "--temp", "--name", f"one-{i}",
                 *set_epochs, "evaluate"],
                ws, env,
            )  # fmt: skip
            singles.append(wall)
            fits += [
                float(line.split()[1]) for line in out.splitlines() if line.startswith("fit: ")
            ]
        sweeps: dict[int, float] = {}
        for jobs in args.jobs:
            wall, _ = timed(
                ["fmnist", "sweep", "--jobs", str(jobs), "--name", f"bench-j{jobs}", *epochs],
                ws,
                env,
            )
            sweeps[jobs] = wall
            print(f"sweep --jobs {jobs}: {wall:.1f} s", file=sys.stderr, flush=True)
        keras_import = "from fmnist.process.imports import load_keras; load_keras()"
        tf_import = python_seconds(keras_import, ws, env)  # as every stage loads it
        mlflow_import = python_seconds("import mlflow", ws, env)
        load = python_seconds(
            "import numpy as np\nfor s in ('train','val','test'):\n"
            "    d = np.load(f'data/prepared/{s}.npz'); d['x'], d['y']",
            ws, env,
        )  # fmt: skip

    one = statistics.median(singles)
    fit = statistics.median(fits)
    print(
        f"\none training (dvc exp run --temp ... evaluate): median {one:.1f} s",
        [round(s, 1) for s in singles],
    )
    for jobs, wall in sweeps.items():
        print(
            f"sweep of {GRID}, --jobs {jobs}: {wall:.1f} s;",
            f"ratio to {GRID} x one training: {wall / (GRID * one):.3f}",
        )
    print("\nwhere one training's time goes (seconds)")
    parts = {
        "fit (train's own timer)": fit,
        "Keras import on TensorFlow (train)": tf_import,
        "MLflow import x2 (train, evaluate)": 2 * mlflow_import,
        "data loading (3 splits, numpy)": load,
    }
    for label, value in parts.items():
        print(f"  {label:66s} {value:6.2f}")
    print(
        f"  {'the rest: DVC (workspace copy, hashing, commit), tracking, saving':66s}",
        f"{one - sum(parts.values()):6.2f}",
    )
    print(f"\nmachine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
