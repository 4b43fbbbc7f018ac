from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import psutil
import pytest

from fmnist import stack


def _sleeper(cfg: stack.StackConfig, name: str) -> stack.Service:
    """A real process started the way `up` starts services (own group, logged, recorded)."""
    cmd = [sys.executable, "-c", "import subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
           "time.sleep(60)"]  # fmt: skip
    return stack._start(name, cmd, {}, cfg, "", "")


def test_stop_ends_each_service_and_its_children(tmp_path: Path) -> None:
    cfg = stack.StackConfig(tmp_path, tmp_path / ".stack")
    services = [_sleeper(cfg, "a"), _sleeper(cfg, "b")]
    assert all(stack._alive(s) for s in services)
    assert stack.stop(services, timeout=5) == ["a", "b"]
    assert not any(stack._alive(s) for s in services)
    assert _live_group_members(services[0].pid) == []  # nothing left running in its group


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a group that still run (zombies await their parent, they run nothing)."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    cfg = stack.StackConfig(tmp_path, tmp_path / ".stack")
    service = _sleeper(cfg, "a")
    stranger = stack.Service("a", service.pid, ["something", "else"], "", "", "")
    assert not stack._alive(stranger)
    assert stack.stop([stranger]) == []  # left alone
    assert stack._alive(service)
    stack.stop([service], timeout=5)


def test_down_stops_what_up_recorded_and_removes_its_prefect_toml(tmp_path: Path) -> None:
    cfg = stack.StackConfig(tmp_path, tmp_path / ".stack")
    cfg.state_dir.mkdir()
    services = [_sleeper(cfg, "server")]
    stack._save(cfg, services)
    stack._write_prefect_toml(tmp_path, "http://127.0.0.1:4200/api")
    assert 'url = "http://127.0.0.1:4200/api"' in (tmp_path / "prefect.toml").read_text()
    assert [s.name for s, running, _ in stack.status(cfg.state_dir)] == ["server"]

    assert stack.down(tmp_path, cfg.state_dir) == ["server"]
    assert not stack._alive(services[0])
    assert not (tmp_path / "prefect.toml").exists()
    assert stack.load_services(cfg.state_dir) == []
    assert stack.down(tmp_path, cfg.state_dir) == []  # twice is fine


def test_the_users_own_prefect_toml_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://mine/api"\n')
    stack._write_prefect_toml(tmp_path, "http://127.0.0.1:4200/api")
    stack.down(tmp_path, tmp_path / ".stack")
    assert (tmp_path / "prefect.toml").read_text() == '[api]\nurl = "http://mine/api"\n'


def test_up_refuses_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = stack.StackConfig(tmp_path, tmp_path / ".stack", prefect_port=port)
        with pytest.raises(stack.StackError, match=rf"127\.0\.0\.1:{port} is in use; Prefect"):
            stack.up(cfg)
    assert stack.load_services(cfg.state_dir) == []


def test_healthy_is_false_when_nothing_answers() -> None:
    assert not stack.healthy(f"http://127.0.0.1:{stack.free_port()}/health", timeout=1)
