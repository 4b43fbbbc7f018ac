"""A temporary copy of the repo, run with the real DVC through its CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO, SHARED_DATA

if TYPE_CHECKING:
    from fmnist.stack import Service, StackConfig

PROJECT_FILES = [
    "src",
    "flows",
    "prefect.yaml",
    "params.yaml",
    "dvc.yaml",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
    "pyproject.toml",
]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "fmnist tests", "GIT_AUTHOR_EMAIL": "tests@fmnist.invalid",
    "GIT_COMMITTER_NAME": "fmnist tests", "GIT_COMMITTER_EMAIL": "tests@fmnist.invalid",
}  # fmt: skip


def data_mirror() -> str:
    """The real Fashion-MNIST files: FMNIST_DATA_MIRROR, the shared copy, or Debian's package."""
    for candidate in (
        os.environ.get("FMNIST_DATA_MIRROR"),
        str(SHARED_DATA),
        "/usr/share/datasets/fashion-mnist",
    ):
        if candidate and Path(candidate, "t10k-labels-idx1-ubyte.gz").is_file():
            return candidate
    pytest.skip("no local copy of the Fashion-MNIST files (set FMNIST_DATA_MIRROR)")


Runner = Callable[..., subprocess.CompletedProcess[str]]


def copy_repo(dest: Path) -> Path:
    """A fresh git + DVC repo at dest holding the project's pipeline, committed."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    run = make_runner(dest)
    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "pipeline")
    return dest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh git + DVC repo holding the project's pipeline, committed."""
    return copy_repo(tmp_path / "repo")


def runner_env(cwd: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """This venv first on PATH, the real data mirror, and an MLflow store inside cwd."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "FMNIST_DATA_MIRROR": data_mirror(),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
        **(extra_env or {}),
    }


def make_runner(cwd: Path, extra_env: dict[str, str] | None = None) -> Runner:
    env = runner_env(cwd, extra_env)

    def run(
        *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture
def dvc(repo: Path) -> Runner:
    return make_runner(repo)


def adopt_experiment(run: Runner, repo: Path, name: str) -> None:
    """What a team does with an experiment it keeps: `dvc exp apply`, then commit the files
    the experiment committed (dvc.lock, params.yaml, the small git-tracked outputs)."""
    from fmnist.pipeline.dvc_cli import find_experiment

    ref, _ = find_experiment(repo, name)
    run("dvc", "exp", "apply", name)
    run("git", "add", *run("git", "diff", "--name-only", "HEAD", ref).stdout.split())
    run("git", "commit", "-q", "-m", f"adopt {name}")


@dataclass
class LocalStack:
    """A running `fmnist stack` for a test repo: its services, and the environment a client
    (the Prefect CLI, MLflow) needs to reach it."""

    services: list[Service]
    env: dict[str, str]  # PREFECT_API_URL, PREFECT_HOME, MLFLOW_TRACKING_URI


@contextlib.contextmanager
def running_stack(cfg: StackConfig, echo: Callable[[str], None] = print) -> Iterator[list[Service]]:
    """`stack.up(cfg)`, yielding its services. Stopped at the
    end, pass or fail (also when its record cannot be read), and, unless the block itself
    failed (that failure is the one to report), checked: no process it recorded survives,
    and the Prefect settings file it wrote is gone."""
    from fmnist import stack

    try:
        yield stack.up(cfg, echo=echo)
    finally:
        failing = sys.exc_info()[0] is not None
        try:
            recorded = stack.load_services(cfg.state_dir)
        finally:
            stack.down(cfg.root, cfg.state_dir)
        if not failing:
            assert not any(stack.processes.alive(s) for s in recorded), "a process survived"
            assert not (cfg.root / stack.PREFECT_TOML).exists()


@contextlib.contextmanager
def local_stack(repo: Path, worker_env: dict[str, str] | None = None) -> Iterator[LocalStack]:
    """The stack (Prefect server, work pool, worker, MLflow server) for repo on free loopback
    ports, tracking to the repo's sqlite store, its state in repo/.stack; worker_env: extra
    environment for its processes. Stopped and checked as running_stack says."""
    from fmnist import stack

    tracking_uri = f"sqlite:///{repo / 'mlflow.db'}"
    cfg = stack.StackConfig(
        root=repo,
        state_dir=repo / ".stack",
        prefect_port=stack.free_port(),
        mlflow_port=stack.free_port(),
        tracking_uri=tracking_uri,
        env=worker_env or {},
    )
    with running_stack(cfg) as services:
        env = {
            "PREFECT_API_URL": f"http://127.0.0.1:{cfg.prefect_port}/api",
            "PREFECT_HOME": str(cfg.state_dir / "prefect"),
            "MLFLOW_TRACKING_URI": tracking_uri,
        }
        yield LocalStack(services, env)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, folder: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port (backend_uri; artifacts, log in
    folder), answering /health; yields its URL and is stopped by its process group."""
    import signal
    import time

    from fmnist import stack

    port = stack.free_port()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", backend_uri, "--workers", "1",
             "--artifacts-destination", str(folder / "artifacts")],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not stack.healthy(f"{url}/health"):
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the MLflow server did not answer"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
