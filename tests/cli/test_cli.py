"""The `fmnist` command as users run it: one line on stderr and a specific exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.process.errors import ConfigError, DataIntegrityError, DownloadError


def fmnist(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fmnist.cli", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_bad_params_exit_2(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  optimizer: adamw\n")
    result = fmnist("train", cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code
    line = one_line_error(result)
    assert line.startswith("fmnist train: error: params.yaml: train.optimizer")
    assert "'rmsprop'" in line and "adamw" in line


def test_download_with_no_mirror(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        f"download:\n  mirrors: [{tmp_path / 'none'}]\n  retries: 0\n"
    )
    result = fmnist("download", "--out", "raw", cwd=tmp_path, env={"FMNIST_DATA_MIRROR": ""})
    assert result.returncode == DownloadError.exit_code
    assert "FMNIST_DATA_MIRROR" in one_line_error(result)
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.slow
def test_train_without_data(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    result = fmnist("train", "--data", "nowhere", cwd=tmp_path)
    assert result.returncode == DataIntegrityError.exit_code
    assert "nowhere/train.npz: missing" in one_line_error(result)
    assert not (tmp_path / "mlflow.db").exists()  # no run was started


def test_output_reaches_a_pipe_and_the_exit_code_is_kept() -> None:
    """Help reaches a pipe whole; an unknown command is a usage error (2)."""
    result = fmnist("--help", cwd=Path.cwd())
    assert result.returncode == 0 and "train" in result.stdout
    result = fmnist("no-such-command", cwd=Path.cwd())
    assert result.returncode == 2


def test_mlflow_telemetry_is_off_in_fmnist_processes() -> None:
    """MLflow 3 posts usage data to its vendor unless told not to (or it sees CI)."""
    import os

    # An environment of its own: a CI's or pytest's markers (CI, PYTEST_CURRENT_TEST, ...)
    # would turn MLflow's telemetry client off whatever fmnist does.
    env = {"HOME": os.environ.get("HOME", "/"), "LANG": "C.UTF-8"}
    code = (
        "import fmnist, mlflow\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "print(get_telemetry_client())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout) == (0, "None\n"), result.stderr


def test_a_command_exits_like_python_threads_joined_exit_hooks_run_code_kept() -> None:
    """run_app ends with a normal interpreter exit (only the collector's teardown passes are
    skipped, gc.freeze): a live ThreadPoolExecutor does not hang it, a running non-daemon
    thread finishes first, atexit handlers run, buffered output arrives, the code is kept."""
    code = (
        "import atexit, sys, threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import typer\n"
        "from fmnist.cli.app import app, run_app\n"
        "@app.command()\n"
        "def work() -> None:\n"
        "    pool = ThreadPoolExecutor(2); pool.submit(print, 'task', flush=True).result()\n"
        "    threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()\n"
        "    atexit.register(print, 'atexit ran')\n"
        "    print('buffered, not flushed')\n"
        "    raise typer.Exit(3)\n"
        "sys.argv = ['fmnist', 'work']\n"
        "run_app()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout.split("\n")[:4] == [
        "task", "buffered, not flushed", "thread done", "atexit ran"
    ]  # fmt: skip


def test_score_with_bad_input_is_one_line_and_exit_3(tmp_path: Path) -> None:
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "notes.txt").write_text("not an image")
    (tmp_path / "params.yaml").write_text("{}\n")  # every section at its default
    result = fmnist("score", "batch", cwd=tmp_path)
    assert result.returncode == 3
    assert "notes.txt: not an image Pillow can read" in one_line_error(result)
    assert not (tmp_path / "scores").exists() and not (tmp_path / "mlflow.db").exists()
