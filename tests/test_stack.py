"""The local stack's bookkeeping on real, short-lived processes (sleepers started the way `up`
starts services) and real signals: finding, orphans, stopping, the record, secrets."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fmnist import stack

PASSWORD = "s3cret-Pa55"
PYTHON = Path(sys.executable).name  # how `python -c ...` is named (no module, no script)
CHILD = "import os, sys, time; sys.argv[1] == 'setsid' and os.setsid(); time.sleep(60)"
PARENT = (
    "import os, subprocess, sys, time; mode, out = sys.argv[1], sys.argv[2]\n"
    "env = {} if mode == 'noenv' else None\n"  # noenv: a child that drops the marker
    f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}, mode], env=env)\n"
    "open(out + '.tmp', 'w').write(str(child.pid)); os.replace(out + '.tmp', out)\n"
    "time.sleep(60)\n"
)


class Stack:
    """Services started by stack._start (own session, marker, log) and recorded; stopped at
    the end of the test whatever happens."""

    def __init__(self, root: Path) -> None:
        self.cfg = stack.StackConfig(root, root / ".stack")
        self.services: list[stack.Service] = []

    def parent(self, name: str, mode: str = "inherit") -> tuple[stack.Service, psutil.Process]:
        """A service whose process has one child (mode: inherit, setsid, noenv)."""
        out = self.cfg.root / f"{name}.child"
        cmd = [sys.executable, "-c", PARENT, mode, str(out)]
        self.services.append(stack._start(name, cmd, {}, self.cfg, "", ""))
        stack._save(self.cfg, self.services)
        deadline = time.monotonic() + 20
        while not out.exists():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        return self.services[-1], psutil.Process(int(out.read_text()))

    def found(self) -> dict[int, stack.Found]:
        return {f.process.pid: f for f in stack.find_processes(self.cfg.state_dir, self.services)}


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Stack]:
    started = Stack(tmp_path)
    yield started
    stack.stop(started.cfg.state_dir, started.services, timeout=5)


def _kill(service: stack.Service) -> None:
    os.kill(service.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while stack._alive(service):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _runs(proc: psutil.Process) -> bool:
    """proc runs: not gone, not a zombie (this container's init may be slow to reap them)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_members(sid: int) -> list[int]:
    """Processes of a session that still run (zombies await their parent, they run nothing)."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


# --- finding processes -------------------------------------------------------------------------


def test_a_service_and_its_child_are_found_and_stopped(run: Stack) -> None:
    service, child = run.parent("a")
    other, _ = run.parent("b")
    found = run.found()
    assert found[service.pid].top and found[service.pid].service == "a"
    assert not found[child.pid].top and found[child.pid].service == "a"
    assert {f.service for f in found.values()} == {"a", "b"}
    assert service.create_time == psutil.Process(service.pid).create_time()

    stopped = stack.stop(run.cfg.state_dir, run.services, timeout=5)
    assert {f.process.pid for f in stopped} == set(found)
    assert run.found() == {}
    assert _session_members(service.pid) == [] and _session_members(other.pid) == []


@pytest.mark.parametrize("mode", ["inherit", "setsid", "noenv"])
def test_an_orphan_is_found_named_and_stopped(run: Stack, mode: str) -> None:
    """inherit: found by marker and session; setsid: left the session, found by the marker;
    noenv: dropped the marker, found by the session."""
    service, child = run.parent("mlflow-server", mode)
    _kill(service)  # the parent dies; its child is reparented and runs on
    assert _runs(child) and child.ppid() != service.pid

    assert list(run.found()) == [child.pid]
    (row,) = stack.status(run.cfg.state_dir).services
    assert row.state == "running"
    assert row.orphans == [f"{PYTHON} (pid {child.pid})"]

    result = stack.down(run.cfg.root, run.cfg.state_dir)
    assert result.services == ["mlflow-server"] and result.damaged is None
    assert not _runs(child)
    assert stack.load_services(run.cfg.state_dir) == []


def test_status_tells_running_from_stopped(run: Stack) -> None:
    run.parent("worker")
    (row,) = stack.status(run.cfg.state_dir).services
    assert (row.state, row.orphans) == ("running", [])  # "" answers no health check
    stack.stop(run.cfg.state_dir, run.services, timeout=5)
    (row,) = stack.status(run.cfg.state_dir).services
    assert (row.state, row.orphans) == ("stopped", [])


def test_a_reused_pid_is_not_ours(run: Stack) -> None:
    service, _ = run.parent("a")
    assert service.create_time is not None
    stranger = stack.Service(
        "a", service.pid, service.cmdline, "", "", "", service.create_time - 60
    )
    assert not stack._alive(stranger)
    assert stack.find_processes(run.cfg.root / "elsewhere", [stranger]) == []
    assert stack.stop(run.cfg.root / "elsewhere", [stranger]) == []  # left alone
    assert stack._alive(service)


def test_another_stacks_processes_are_not_ours(run: Stack, tmp_path: Path) -> None:
    other = Stack(tmp_path / "other")
    other.cfg.root.mkdir()
    theirs, _ = other.parent("a")
    try:
        assert run.found() == {}
        assert stack.down(run.cfg.root, run.cfg.state_dir).services == []
        assert stack._alive(theirs)
    finally:
        stack.stop(other.cfg.state_dir, other.services, timeout=5)


def test_up_refuses_while_a_previous_stacks_process_runs(run: Stack) -> None:
    service, child = run.parent("mlflow-server")
    _kill(service)
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


# --- down, prefect.toml --------------------------------------------------------------------------


def test_down_stops_what_up_recorded_and_removes_its_prefect_toml(run: Stack) -> None:
    service, child = run.parent("server")
    stack._write_prefect_toml(run.cfg.root, "http://127.0.0.1:4200/api")
    assert 'url = "http://127.0.0.1:4200/api"' in (run.cfg.root / "prefect.toml").read_text()

    assert stack.down(run.cfg.root, run.cfg.state_dir) == stack.Stopped(["server"], [])
    assert not stack._alive(service) and not _runs(child)
    assert not (run.cfg.root / "prefect.toml").exists()
    assert stack.load_services(run.cfg.state_dir) == []
    assert stack.down(run.cfg.root, run.cfg.state_dir) == stack.Stopped([], [])  # twice is fine


def test_the_users_own_prefect_toml_is_never_touched(tmp_path: Path) -> None:
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://mine/api"\n')
    stack._write_prefect_toml(tmp_path, "http://127.0.0.1:4200/api")
    stack.down(tmp_path, tmp_path / ".stack")
    assert (tmp_path / "prefect.toml").read_text() == '[api]\nurl = "http://mine/api"\n'


# --- a damaged record ----------------------------------------------------------------------------

DAMAGED = [
    (b"", "empty"),
    (b"{not json", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
     "(char 1)"),
    (b"\xff\xfe[]", "unreadable: 'utf-8' codec can't decode byte 0xff in position 0: invalid "
     "start byte"),
    (b'{"name": "a"}', "a list of services expected, found a dict"),
    (b'["a"]', "service 1 is a str, not an object"),
    (b'[{"name": "a", "pid": 1}]', "service 1 lacks cmdline, url, health_url, log"),
    (b'[{"name": "a", "pid": "1", "cmdline": [], "url": "", "health_url": "", "log": ""}]',
     "service 1: pid is a str"),
    (b'[{"name": "a", "pid": 1, "cmdline": [], "url": "", "health_url": "", "log": "",'
     b' "create_time": "x"}]', "service 1: create_time is a str"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "why"), DAMAGED)
def test_a_damaged_record_is_one_line_for_status_and_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, why: str
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / ".stack"
    state.mkdir()
    (state / "stack.json").write_bytes(content)
    line = (
        f".stack/stack.json is damaged ({why}); run `fmnist stack down` to stop what can be found"
    )
    with pytest.raises(stack.DamagedRecord) as damaged:
        stack.status(state)
    assert str(damaged.value) == line
    with pytest.raises(stack.StackError, match="is damaged"):
        stack.up(stack.StackConfig(tmp_path, state))
    assert (state / "stack.json").read_bytes() == content  # up started nothing, wrote nothing


def test_a_record_from_before_create_time_still_works(run: Stack) -> None:
    service, child = run.parent("old")
    entry = {k: v for k, v in vars(service).items() if k != "create_time"}
    (run.cfg.state_dir / "stack.json").write_text(json.dumps([entry]))
    (old,) = stack.load_services(run.cfg.state_dir)
    assert old.create_time is None and stack._alive(old)  # known by its command line
    assert stack.down(run.cfg.root, run.cfg.state_dir).services == ["old"]
    assert not _runs(child)


def test_down_with_a_damaged_record_stops_what_carries_the_marker(run: Stack) -> None:
    service, child = run.parent("prefect-server")
    (run.cfg.state_dir / "stack.json").write_text("[{")
    result = stack.down(run.cfg.root, run.cfg.state_dir)
    assert result.damaged is not None and result.damaged.startswith("not JSON")
    assert (result.services, result.unrecorded) == (["prefect-server"], [])  # by the marker
    assert not stack._alive(service) and not _runs(child)
    assert not (run.cfg.state_dir / "stack.json").exists()


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


# --- secrets and modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://fmnist:s3cret@db:5432/mlflow", "postgresql://fmnist:***@db:5432/mlflow"),
        ("postgresql+asyncpg://u:p%40ss@db/prefect", "postgresql+asyncpg://u:***@db/prefect"),
        (
            "error for postgresql://u:p@ss@db/x: refused",
            "error for postgresql://u:***@db/x: refused",
        ),
        ("host=db user=u password=s3cret dbname=x", "host=db user=u password=*** dbname=x"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("postgresql://fmnist@db/mlflow", "postgresql://fmnist@db/mlflow"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_redact_hides_passwords(text: str, shown: str) -> None:
    assert stack.redact(text) == shown


def test_redact_hides_a_known_secret_anywhere() -> None:
    secrets = stack._passwords(["postgresql://u:p%40ss@db/x", "http://127.0.0.1"])
    assert secrets == {"p%40ss", "p@ss"}
    assert stack.redact("FATAL: bad password 'p@ss'", secrets) == "FATAL: bad password '***'"


def test_the_mlflow_server_gets_its_store_by_environment(tmp_path: Path) -> None:
    from mlflow.cli import server  # the names `mlflow server` reads its options from

    cfg = stack.StackConfig(tmp_path, tmp_path / ".stack", mlflow_artifacts="s3://bucket/a")
    store = f"postgresql://fmnist:{PASSWORD}@db:5432/mlflow"
    cmd, env = stack.mlflow_command(cfg, store)
    assert not any(PASSWORD in arg or "postgresql" in arg for arg in cmd)
    envvars = {p.name: p.envvar for p in server.params}
    assert env[envvars["backend_store_uri"]] == store
    assert env[envvars["artifacts_destination"]] == "s3://bucket/a"
    assert [k for k, v in env.items() if PASSWORD in v] == [envvars["backend_store_uri"]]


def test_the_record_logs_and_errors_never_show_a_password(run: Stack) -> None:
    url = f"postgresql://fmnist:{PASSWORD}@db/mlflow"
    code = f"import sys; print('cannot connect to', {url!r}); sys.exit(3)"
    service = stack._start("mlflow-server", [sys.executable, "-c", code, url], {}, run.cfg, "", "")
    run.services.append(service)
    stack._save(run.cfg, run.services)
    assert service.cmdline[-1] == "postgresql://fmnist:***@db/mlflow"
    assert PASSWORD not in (run.cfg.state_dir / "stack.json").read_text()
    with pytest.raises(stack.StackError) as failed:
        stack._wait_healthy(service, timeout=20, secrets=stack._passwords([url]))
    assert "cannot connect to postgresql://fmnist:***@db/mlflow" in str(failed.value)
    assert PASSWORD not in str(failed.value)


def test_the_state_is_private_and_prefect_toml_ordinary(run: Stack) -> None:
    run.cfg.state_dir.mkdir(mode=0o755)
    (run.cfg.state_dir / "logs").mkdir(mode=0o755)
    (run.cfg.state_dir / "logs" / "a.log").write_text("from before\n")
    os.chmod(run.cfg.state_dir / "logs" / "a.log", 0o644)
    run.parent("a")
    stack._write_prefect_toml(run.cfg.root, "http://127.0.0.1:4200/api")

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(run.cfg.state_dir) == 0o700
    assert mode(run.cfg.state_dir / "logs") == 0o700
    assert mode(run.cfg.state_dir / "logs" / "a.log") == 0o600
    assert mode(run.cfg.state_dir / "stack.json") == 0o600
    assert mode(run.cfg.root / "prefect.toml") == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_healthy_is_false_when_nothing_answers() -> None:
    assert not stack.healthy(f"http://127.0.0.1:{stack.free_port()}/health", timeout=1)
