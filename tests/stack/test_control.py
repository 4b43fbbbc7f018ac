"""`up`, `down` and `status` on real, short-lived processes started the way `up` starts
services: what runs, what `up` refuses, what `down` stops and removes, and the CLI's lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import stack
from fmnist.stack import processes, write_prefect_toml
from fmnist.stack.processes import alive
from tests.stack.conftest import PASSWORD, PYTHON, Stack, kill, runs


def test_status_tells_running_from_stopped(run: Stack) -> None:
    run.parent("worker")
    (row,) = stack.status(run.cfg.state_dir).services
    assert (row.state, row.orphans) == ("running", [])  # "" answers no health check
    processes.stop(run.cfg.state_dir, run.services, timeout=5)
    (row,) = stack.status(run.cfg.state_dir).services
    assert (row.state, row.orphans) == ("stopped", [])


def test_up_refuses_while_a_previous_stacks_process_runs(run: Stack) -> None:
    service, child = run.parent("mlflow-server")
    kill(service)
    with pytest.raises(stack.StackError) as refused:
        stack.up(run.cfg)
    assert str(refused.value) == (
        f"a previous stack still runs: mlflow-server {PYTHON} (pid {child.pid}); "
        "run `make down` first"
    )


def test_up_names_who_holds_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = stack.StackConfig(tmp_path, tmp_path / ".stack", prefect_port=port)
        with pytest.raises(stack.StackError) as refused:
            stack.up(cfg)
    assert str(refused.value).startswith(f"127.0.0.1:{port} is in use by ")
    assert f"(pid {os.getpid()}); Prefect needs it (stop it or pick one)" in str(refused.value)
    assert stack.load_services(cfg.state_dir) == []


# --- down, prefect.toml ---------------------------------------------------------------------------


def test_down_stops_what_up_recorded_and_removes_its_prefect_toml(run: Stack) -> None:
    service, child = run.parent("server")
    write_prefect_toml(run.cfg.root, "http://127.0.0.1:4200/api")
    assert 'url = "http://127.0.0.1:4200/api"' in (run.cfg.root / "prefect.toml").read_text()

    assert stack.down(run.cfg.root, run.cfg.state_dir) == stack.Stopped(["server"], [])
    assert not alive(service) and not runs(child)
    assert not (run.cfg.root / "prefect.toml").exists()
    assert stack.load_services(run.cfg.state_dir) == []
    assert stack.down(run.cfg.root, run.cfg.state_dir) == stack.Stopped([], [])  # twice is fine


def test_the_users_own_prefect_toml_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://mine/api"\n')
    write_prefect_toml(tmp_path, "http://127.0.0.1:4200/api")
    stack.down(tmp_path, tmp_path / ".stack")
    assert (tmp_path / "prefect.toml").read_text() == '[api]\nurl = "http://mine/api"\n'


def test_down_with_a_damaged_record_stops_what_carries_the_marker(run: Stack) -> None:
    service, child = run.parent("prefect-server")
    (run.cfg.state_dir / "stack.json").write_text("[{")
    (run.cfg.state_dir / ".stack.0a1b2c3d.json").write_text("[")  # an `up` killed saving it
    (run.cfg.state_dir / "stack.partial").write_text("[")  # an older fmnist's
    result = stack.down(run.cfg.root, run.cfg.state_dir)
    assert result.damaged is not None and result.damaged.startswith("not JSON")
    assert (result.services, result.unrecorded) == (["prefect-server"], [])  # by the marker
    assert not alive(service) and not runs(child)
    assert sorted(p.name for p in run.cfg.state_dir.glob("*stack*")) == []


def test_the_cli_says_a_damaged_record_in_one_line_exit_7(tmp_path: Path) -> None:
    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "stack.json").write_text('{"services": []}')
    fmnist = str(Path(sys.executable).parent / "fmnist")
    done = subprocess.run(
        [fmnist, "stack", "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 7
    assert done.stderr == (
        "fmnist stack status: error: .stack/stack.json is damaged (a list of services expected, "
        "found a dict); run `fmnist stack down` to stop what can be found\n"
    )
    down = subprocess.run(
        [fmnist, "stack", "down"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stderr
    assert down.stdout == "nothing was running\n"
    assert down.stderr == (
        ".stack/stack.json was damaged (a list of services expected, found a dict); stopped what "
        "carries the stack's marker, removed the record\n"
    )
    assert not (tmp_path / ".stack" / "stack.json").exists()


def test_the_cli_warns_of_a_password_on_its_own_command_line(tmp_path: Path) -> None:
    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "stack.json").write_text("[")  # up stops here, before starting anything
    url = f"postgresql://fmnist:{PASSWORD}@db/mlflow"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fmnist"), "stack", "up", "--mlflow-backend-uri", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 7
    warning, error = done.stderr.splitlines()
    assert warning.startswith("fmnist stack up: warning: a password on this command line")
    assert "FMNIST_MLFLOW_BACKEND_URI" in warning
    assert error.startswith("fmnist stack up: error: .stack/stack.json is damaged")
