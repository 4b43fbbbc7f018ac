"""The pipeline through a real Prefect server and process worker, deployed from prefect.yaml.

One stack (server, work pool, worker, MLflow server; all on free loopback ports, Prefect home
in a temporary folder) serves the tests of this module and is stopped at its end, pass or fail.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fmnist import stack
from tests.integration.conftest import (
    Runner,
    adopt_experiment,
    copy_repo,
    data_mirror,
    local_stack,
    make_runner,
    runner_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYMENT = "fashion-mnist-pipeline/default"
FAILING_REQUESTS = 5  # more than one stage attempt survives (download.retries = 3)


class FlakyMirror(http.server.SimpleHTTPRequestHandler):
    """Serves the dataset folder, but answers 503 to the first FAILING_REQUESTS requests."""

    requests = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with FlakyMirror.lock:
            FlakyMirror.requests += 1
            fail = FlakyMirror.requests <= FAILING_REQUESTS
        if fail:
            self.send_error(503, "flaky mirror: try again")
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Stack:
    repo: Path
    run: Runner
    env: dict[str, str]
    services: list[stack.Service]
    tracking_uri: str


@pytest.fixture(scope="module")
def flaky_mirror() -> Iterator[str]:
    folder = Path(data_mirror())

    def handler(*args: object) -> FlakyMirror:
        return FlakyMirror(*args, directory=str(folder))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory, flaky_mirror: str) -> Iterator[Stack]:
    repo = copy_repo(tmp_path_factory.mktemp("prefect") / "repo")
    with local_stack(repo, {"FMNIST_DATA_MIRROR": flaky_mirror}) as running:
        env = runner_env(repo, running.env)
        tracking_uri = running.env["MLFLOW_TRACKING_URI"]
        yield Stack(repo, make_runner(repo, env), env, running.services, tracking_uri)


def _flow_run_id(output: str) -> str:
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def _start_run(stack_: Stack, *params: str) -> subprocess.Popen[str]:
    args = ["prefect", "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "900"]
    for param in params:
        args += ["-p", param]
    return subprocess.Popen(
        args,
        cwd=stack_.repo,
        env=stack_.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _versions(tracking_uri: str) -> list[dict[str, str]]:
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri).search_model_versions("name = 'fashion-mnist'")
    return [dict(v.tags) | {"version": str(v.version)} for v in found]


def test_two_deployment_runs_at_once_both_complete(prefect_stack: Stack) -> None:
    """Started together: one waits its turn; both register a version with their params."""
    params_before = (prefect_stack.repo / "params.yaml").read_bytes()
    first = _start_run(prefect_stack, "epochs=1", "hidden_units=[32]")
    second = _start_run(prefect_stack, "epochs=1", "optimizer=adam", "hidden_activation=relu")
    try:
        outputs = [proc.communicate(timeout=1200)[0] for proc in (first, second)]
    finally:
        for proc in (first, second):
            proc.kill()  # no-op once they ended; never leave a watcher behind
    for proc, output in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, output
        assert "Completed" in output, output

    assert (prefect_stack.repo / "params.yaml").read_bytes() == params_before
    versions = {v["params.train.optimizer"]: v for v in _versions(prefect_stack.tracking_uri)}
    assert set(versions) == {"rmsprop", "adam"}
    assert versions["rmsprop"]["params.model.hidden.0.units"] == "32"
    assert versions["adam"]["params.model.hidden.0.activation"] == "relu"
    assert all(v["params.train.epochs"] == "1" for v in versions.values())
    assert FlakyMirror.requests > FAILING_REQUESTS  # the download survived the 503s

    accuracy = {k: float(v["test_accuracy"]) for k, v in versions.items()}
    champion = _champion(prefect_stack.tracking_uri)
    assert float(champion.tags["test_accuracy"]) >= max(accuracy.values()) - 0.001
    assert champion.tags["fmnist.promotion.promoted"] == "true"

    exps = prefect_stack.run("dvc", "exp", "list", "--name-only").stdout.split()
    assert len(exps) == 2, exps
    shown = prefect_stack.run("prefect", "artifact", "inspect", "fashion-mnist-model").stdout
    assert "challenger" in shown and "MLflow run id" in shown, shown
    table = prefect_stack.run("prefect", "artifact", "inspect", "fashion-mnist-epochs").stdout
    assert "val_accuracy" in table, table


def _champion(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri).get_model_version_by_alias("fashion-mnist", "champion")


def test_promote_model_deployment_moves_champion(prefect_stack: Stack) -> None:
    before = str(_champion(prefect_stack.tracking_uri).version)
    other = next(
        v["version"] for v in _versions(prefect_stack.tracking_uri) if v["version"] != before
    )
    result = prefect_stack.run(
        "prefect", "deployment", "run", "promote-model/default", "-p", f"version={other}",
        "--watch", "--watch-timeout", "300",
    )  # fmt: skip
    assert "Completed" in result.stdout + result.stderr
    assert str(_champion(prefect_stack.tracking_uri).version) == other
    refused = prefect_stack.run(
        "prefect", "deployment", "run", "promote-model/default", "-p", "version=99",
        "--watch", "--watch-timeout", "300", check=False,
    )  # fmt: skip
    # `prefect deployment run --watch` exits 1 for a run that did not complete
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Flow run finished in state 'Failed'" in refused.stdout + refused.stderr
    assert str(_champion(prefect_stack.tracking_uri).version) == other

    # The registry CLI against the stack's MLflow tracking server (not the sqlite file).
    server = next(s.url for s in prefect_stack.services if s.name == "mlflow-server")
    listed = prefect_stack.run("fmnist", "models", "--tracking-uri", server).stdout
    assert f"{other:>7}  @" in listed and "@champion" in listed, listed
    rolled = prefect_stack.run("fmnist", "rollback", "--tracking-uri", server).stdout
    assert f"from v{other} to v{before}" in rolled, rolled


def test_failing_stage_fails_the_flow_run_with_its_error(prefect_stack: Stack) -> None:
    """train cannot reach its tracking server: Failed, and train's own line is in the logs."""
    unreachable = f"http://127.0.0.1:{stack.free_port()}"
    env = (
        f'env={{"MLFLOW_TRACKING_URI": "{unreachable}", '
        '"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}'
    )
    result = prefect_stack.run(
        "prefect", "deployment", "run", DEPLOYMENT, "-p", "epochs=1", "-p", "learning_rate=0.002",
        "-jv", env, "--watch", "--watch-timeout", "900", check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Flow run finished in state 'Failed'" in output, output
    logs = prefect_stack.run("prefect", "flow-run", "logs", _flow_run_id(output)).stdout
    assert f"fmnist train: error: MLflow tracking server {unreachable} cannot be reached" in logs, (
        logs
    )


def _deployment_run(stack_: Stack, *params: str) -> tuple[str, str]:
    """A completed deployment run with these parameters: (flow run id, its logs)."""
    args = ["prefect", "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "900"]
    result = stack_.run(*args, *(a for p in params for a in ("-p", p)), timeout=1000)
    output = result.stdout + result.stderr
    assert "Completed" in output, output
    run_id = _flow_run_id(output)
    return run_id, stack_.run("prefect", "flow-run", "logs", run_id).stdout


def test_a_rerun_dvc_already_has_is_reused_and_force_retrains(prefect_stack: Stack) -> None:
    """Same parameters again: no new version, and the run says which one it reused.

    DVC reuses the training when the experiment's baseline (dvc.lock) already records its
    data, code and params, here because the first run was adopted (`dvc exp apply` + commit,
    what a team does with a run it keeps). Without that the train stage runs again: DVC keeps
    no run cache for a stage with a `cache: false` output (models/trained.json)."""
    params = ("epochs=1", "batch_size=64")
    before = {v["version"] for v in _versions(prefect_stack.tracking_uri)}
    first_id, first_logs = _deployment_run(prefect_stack, *params)
    (version,) = [v for v in _versions(prefect_stack.tracking_uri) if v["version"] not in before]
    assert version["params.train.batch_size"] == "64"
    assert "reused version" not in first_logs

    (name,) = [
        n
        for n in prefect_stack.run("dvc", "exp", "list", "--name-only").stdout.split()
        if n.endswith(first_id[:8])
    ]
    adopt_experiment(prefect_stack.run, prefect_stack.repo, name)

    _, logs = _deployment_run(prefect_stack, *params)
    line = (
        f"reused version {version['version']} from run {version['run_id']}: DVC restored the "
        "pipeline's outputs (same data, code and params); pass force=true to retrain"
    )
    assert line in logs, logs
    assert "Running stage 'train'" not in logs
    assert {v["version"] for v in _versions(prefect_stack.tracking_uri)} == {
        *before,
        version["version"],
    }
    shown = prefect_stack.run("prefect", "artifact", "inspect", "fashion-mnist-model").stdout
    assert f"reused version {version['version']} from run" in " ".join(shown.split()), shown

    _, forced_logs = _deployment_run(prefect_stack, *params, "force=true")
    assert "Running stage 'train'" in forced_logs and "reused version" not in forced_logs
    (new,) = [
        v
        for v in _versions(prefect_stack.tracking_uri)
        if v["version"] not in {*before, version["version"]}
    ]
    assert new["run_id"] != version["run_id"] and new["params.train.batch_size"] == "64"
