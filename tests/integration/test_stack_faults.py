"""`fmnist stack` when things go wrong, on the real stack (`fmnist stack up` on free loopback
ports in a copy of the repo): a killed MLflow server leaves its uvicorn worker holding the
port; a corrupt stack.json. Every test stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from fmnist import stack
from fmnist.stack.processes import MARKER, port_busy
from tests.integration.conftest import copy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Repo:
    root: Path
    state: Path  # the marker every process of the stack carries
    store: Path  # the MLflow store, outside the repo: proves the server got it by environment
    prefect_port: int
    mlflow_port: int

    def fmnist(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME"):
            env.pop(name, None)
        return subprocess.run(
            [str(Path(sys.executable).parent / "fmnist"), "stack", *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.fmnist(
            "up", "--prefect-port", str(self.prefect_port), "--mlflow-port", str(self.mlflow_port),
            "--tracking-uri", f"sqlite:///{self.store}",
        )  # fmt: skip

    def marked(self) -> list[psutil.Process]:
        """Live processes carrying this stack's marker."""
        procs = []
        for proc in psutil.process_iter(["environ", "status"]):
            env = proc.info["environ"] or {}
            if env.get(MARKER) == str(self.state) and proc.info["status"] != "zombie":
                procs.append(proc)
        return procs


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    root = copy_repo(tmp_path / "repo")
    (tmp_path / "store").mkdir()
    found = Repo(
        root,
        root / ".stack",
        tmp_path / "store" / "mlflow.db",
        stack.free_port(),
        stack.free_port(),
    )
    try:
        yield found
    finally:
        stack.down(root, found.state)  # whatever the test left running
        assert found.marked() == [], "a process of the stack survived down"


def _assert_down(repo: Repo) -> None:
    assert repo.marked() == []
    assert not port_busy(repo.prefect_port) and not port_busy(repo.mlflow_port)
    assert not (repo.state / stack.STATE_FILE).exists()


def _wait_gone(proc: psutil.Process) -> None:
    deadline = time.monotonic() + 30
    while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"{proc} still runs"
        time.sleep(0.1)


def test_a_killed_mlflow_server_leaves_its_worker_which_status_names_and_down_stops(
    repo: Repo,
) -> None:
    started = repo.up()
    assert started.returncode == 0, started.stdout + started.stderr
    record = repo.state / stack.STATE_FILE
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(repo.state.stat().st_mode) == 0o700
    (mlflow,) = [s for s in stack.load_services(repo.state) if s.name == "mlflow-server"]
    # The store reached the server by environment: it is on no command line, and used.
    with urllib.request.urlopen(f"{mlflow.url}/api/2.0/mlflow/experiments/search?max_results=1"):
        pass
    assert repo.store.exists()
    assert not any(str(repo.store) in " ".join(p.cmdline()) for p in repo.marked())
    assert all(str(repo.store) not in " ".join(s.cmdline) for s in stack.load_services(repo.state))

    # `mlflow server --workers 1` is a supervisor and one uvicorn process holding the port.
    top = psutil.Process(mlflow.pid)
    (worker,) = top.children(recursive=True)
    assert "uvicorn" in worker.cmdline()
    top.send_signal(signal.SIGKILL)
    _wait_gone(top)
    assert worker.is_running() and port_busy(repo.mlflow_port)

    shown = repo.fmnist("status")
    assert shown.returncode == 0, shown.stderr
    (line,) = [ln for ln in shown.stdout.splitlines() if ln.startswith("mlflow-server")]
    assert " running " in line and "healthy" not in line, shown.stdout
    orphan = f"uvicorn (pid {worker.pid}, on 127.0.0.1:{repo.mlflow_port})"
    assert line.endswith(f"its process died; orphans still run: {orphan}"), shown.stdout
    assert shown.stdout.count(" healthy ") == 2  # the Prefect server and worker
    assert shown.stdout.splitlines()[-1] == "`make down` stops them all"

    refused = repo.up()
    assert refused.returncode == 7
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert f"mlflow-server {orphan}" in refused.stderr, refused.stderr
    assert refused.stderr.endswith("; run `make down` first\n")

    stopped = repo.fmnist("down")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "stopped: prefect-server, prefect-worker, mlflow-server\n"
    _assert_down(repo)

    again = repo.up()
    assert again.returncode == 0, again.stdout + again.stderr
    shown = repo.fmnist("status")
    assert [ln.split()[3] for ln in shown.stdout.splitlines()] == ["healthy"] * 3, shown.stdout
    assert repo.fmnist("down").returncode == 0
    _assert_down(repo)


def test_a_corrupt_record_is_one_line_and_down_still_stops_the_stack(repo: Repo) -> None:
    started = repo.up()
    assert started.returncode == 0, started.stdout + started.stderr
    assert len(repo.marked()) == 4  # the three services and MLflow's uvicorn worker
    record = repo.state / stack.STATE_FILE
    json.loads(record.read_text())
    record.write_text('[{"name": "prefect-server", "pid": ')  # as a crash mid-write leaves it

    shown = repo.fmnist("status")
    assert shown.returncode == 7
    assert shown.stdout == ""
    assert shown.stderr == (
        "fmnist stack status: error: .stack/stack.json is damaged (not JSON: Expecting value: "
        "line 1 column 36 (char 35)); run `fmnist stack down` to stop what can be found\n"
    )

    stopped = repo.fmnist("down")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stderr == (
        ".stack/stack.json was damaged (not JSON: Expecting value: line 1 column 36 (char 35)); "
        "stopped what carries the stack's marker, removed the record\n"
    )
    assert stopped.stdout == "stopped: prefect-server, prefect-worker, mlflow-server\n"
    _assert_down(repo)
