"""The record (stack.json): damaged records, records from before create_time; secrets
redacted; the state folder, the record and the logs private to the user."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fmnist import stack
from fmnist.stack import write_prefect_toml
from fmnist.stack.processes import alive
from fmnist.stack.record import passwords
from tests.stack.conftest import Stack, runs

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
    assert old.create_time is None and alive(old)  # known by its command line
    assert stack.down(run.cfg.root, run.cfg.state_dir).services == ["old"]
    assert not runs(child)


# --- secrets and modes ----------------------------------------------------------------------------


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
    secrets = passwords(["postgresql://u:p%40ss@db/x", "http://127.0.0.1"])
    assert secrets == {"p%40ss", "p@ss"}
    assert stack.redact("FATAL: bad password 'p@ss'", secrets) == "FATAL: bad password '***'"


def test_the_state_is_private_and_prefect_toml_ordinary(run: Stack) -> None:
    run.cfg.state_dir.mkdir(mode=0o755)
    (run.cfg.state_dir / "logs").mkdir(mode=0o755)
    (run.cfg.state_dir / "logs" / "a.log").write_text("from before\n")
    os.chmod(run.cfg.state_dir / "logs" / "a.log", 0o644)
    run.parent("a")
    write_prefect_toml(run.cfg.root, "http://127.0.0.1:4200/api")

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
