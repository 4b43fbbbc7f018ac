"""Benchmark: the project's train stage and `dvc repro` against the tutorial's own script.

Alternates, round after round on the same machine and data: the tutorial script, the project's
`fmnist train` (batch 32, rmsprop, sigmoid: the defaults), and a full `dvc repro` from scratch
(no data, no cache, no MLflow store), both sides at the same number of epochs (5, the
tutorial's, unless --epochs). Prints medians and ratios.

    make bench                       # 3 rounds
    .venv/bin/python bench/bench_train.py --rounds 5
    .venv/bin/python bench/bench_train.py --rounds 3 --epochs 30

Peak RSS is each process's ru_maxrss (with its children) from wait4.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets" / "fashion-mnist"
FILES = [
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
]  # fmt: skip
STAGES = ["download", "prepare", "train", "evaluate", "register"]
PROJECT = [  # the repo's own files (git-tracked), .gitignore included: without it the
    # bench workspace's git would track the DVC cache, the MLflow store and the stack's state
    "src", "flows", "params.yaml", "prefect.yaml", "dvc.yaml", ".dvc/config", ".dvc/.gitignore",
    ".dvcignore", ".gitignore", "pyproject.toml",
]  # fmt: skip


def measure(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS MiB, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def workspace(root: Path) -> Path:
    ws = root / "repo"
    for name in PROJECT:
        src, dest = REPO / name, ws / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
    return ws


def reset(ws: Path) -> None:
    """From scratch: no outputs, no DVC cache, no lock, no MLflow store."""
    for name in ["data", "models", "metrics", "plots", "mlruns", ".dvc/cache", ".dvc/tmp"]:
        shutil.rmtree(ws / name, ignore_errors=True)
    for name in ["dvc.lock", "mlflow.db"]:
        (ws / name).unlink(missing_ok=True)


def parse_bench(text: str) -> dict[str, float]:
    line = next(line for line in text.splitlines() if line.startswith("BENCH "))
    return json.loads(line[6:])


def last_metric(ws: Path, name: str) -> float:
    import sqlite3

    db = sqlite3.connect(ws / "mlflow.db")
    (value,) = db.execute(
        "select value from metrics where key = ? order by timestamp desc limit 1", (name,)
    ).fetchone()
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="both sides (default: 5)")
    parser.add_argument("--mirror", default=os.environ.get("FMNIST_DATA_MIRROR", str(SHARED)))
    args = parser.parse_args()
    venv_bin = str(Path(sys.executable).parent)
    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
        root = Path(tmp)
        keras_home = root / "keras"
        (keras_home / "datasets" / "fashion-mnist").mkdir(parents=True)
        for name in FILES:
            shutil.copy2(Path(args.mirror) / name, keras_home / "datasets" / "fashion-mnist" / name)
        ws = workspace(root)
        params = ws / "params.yaml"
        text = params.read_text(encoding="utf-8")
        assert "\n  epochs: 5\n" in text, "params.yaml: train.epochs moved"
        params.write_text(text.replace("\n  epochs: 5\n", f"\n  epochs: {args.epochs}\n", 1))
        env = {
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            "KERAS_HOME": str(keras_home),
            "FMNIST_DATA_MIRROR": args.mirror,
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        for i in range(args.rounds):
            wall, rss, text = measure(
                [sys.executable, str(REPO / "bench/tutorial.py"), str(args.epochs)], root, env
            )
            tut = parse_bench(text)
            add("tutorial.wall", wall), add("tutorial.rss", rss)
            add("tutorial.fit", tut["fit_seconds"]), add("tutorial.accuracy", tut["accuracy"])

            reset(ws)
            wall, _, _ = measure(["dvc", "repro"], ws, env)
            add("repro.wall", wall)

            reset(ws)  # each stage on its own, for its peak RSS
            for stage in STAGES:
                wall, rss, _ = measure(["dvc", "repro", "--single-item", stage], ws, env)
                add(f"{stage}.wall", wall), add(f"{stage}.rss", rss)
            wall, rss, _ = measure(["fmnist", "train"], ws, env)  # the stage's own process
            add("train_cmd.wall", wall), add("train_cmd.rss", rss)
            add("project.fit", last_metric(ws, "fit_seconds"))
            add("project.accuracy", last_metric(ws, "accuracy"))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmedians over {args.rounds} rounds at {args.epochs} epochs (seconds, MiB)")
    for key in sorted(med):
        print(f"  {key:20s} {med[key]:9.3f}   {[round(v, 3) for v in results[key]]}")
    ratios = [
        ("fit: project / tutorial", f"{med['project.fit'] / med['tutorial.fit']:.3f}", "<= 0.45"),
        (
            "accuracy: project - tutorial",
            f"{100 * (med['project.accuracy'] - med['tutorial.accuracy']):+.2f} pt",
            "within 0.5 pt",
        ),
        (
            "dvc repro from scratch / tutorial",
            f"{med['repro.wall'] / med['tutorial.wall']:.3f}",
            "<= 1.3 at 5 epochs, <= 0.5 at 30",
        ),
    ]
    worst = max([*STAGES, "train_cmd"], key=lambda s: med[f"{s}.rss"])
    ratios.append(
        (
            f"peak RSS, worst stage ({worst}) / tutorial",
            f"{med[f'{worst}.rss'] / med['tutorial.rss']:.3f}",
            "<= 0.55",
        )
    )
    print("\nratios")
    for label, value, target in ratios:
        print(f"  {label:36s} {value:>10s}   target {target}")


if __name__ == "__main__":
    main()
