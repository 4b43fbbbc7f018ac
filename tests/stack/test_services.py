"""What `up` starts: the MLflow server's store by environment, no password in the record,
logs or errors of a service that fails, health checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fmnist import stack
from fmnist.stack.processes import start, wait_healthy
from fmnist.stack.record import passwords, save
from tests.stack.conftest import PASSWORD, Stack


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
    service = start("mlflow-server", [sys.executable, "-c", code, url], {}, run.cfg, "", "")
    run.services.append(service)
    save(run.cfg, run.services)
    assert service.cmdline[-1] == "postgresql://fmnist:***@db/mlflow"
    assert PASSWORD not in (run.cfg.state_dir / "stack.json").read_text()
    with pytest.raises(stack.StackError) as failed:
        wait_healthy(service, timeout=20, secrets=passwords([url]))
    assert "cannot connect to postgresql://fmnist:***@db/mlflow" in str(failed.value)
    assert PASSWORD not in str(failed.value)


def test_healthy_is_false_when_nothing_answers() -> None:
    assert not stack.healthy(f"http://127.0.0.1:{stack.free_port()}/health", timeout=1)
