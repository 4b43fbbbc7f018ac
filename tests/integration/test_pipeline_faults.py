"""Faults through the real pipeline and the real registry server.

- `dvc repro` on the real data: a typo in params.yaml deletes nothing git tracks; a training
  SIGKILLed mid-fit is closed KILLED by the next `dvc repro`, which then completes.
- A real MLflow server behind a loopback proxy that fails only the champion lookup: the
  promotion stops in one line and moves nothing (an error is never "no champion yet").
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from fmnist.process.errors import TrackingError
from fmnist.registry.champion import tickets
from fmnist.tracking.lifecycle import NOTE_TAG
from tests.integration.conftest import Runner, copy_repo, make_runner
from tests.integration.conftest import mlflow_server as running_mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Runner]:
    """A copy of the repo after a full `dvc repro` on the real data, outputs committed."""
    repo = copy_repo(tmp_path_factory.mktemp("faults") / "repo")
    run = make_runner(repo)
    run("dvc", "repro")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "outputs")
    return repo, run


def _set_param(repo: Path, old: str, new: str) -> None:
    params = repo / "params.yaml"
    text = params.read_text(encoding="utf-8")
    assert old in text
    params.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_refused_param_deletes_nothing_git_tracks(pipeline: tuple[Path, Runner]) -> None:
    repo, run = pipeline
    _set_param(repo, "  epochs: 5", "  epochs: 0")
    try:
        done = run("dvc", "repro", check=False)
        # DVC's exit for a stage command that failed (a DvcException) is 255; train's own
        # exit code (ConfigError's 2) is in its error line
        assert done.returncode == 255, done.stdout + done.stderr
        assert "exited with 2" in done.stdout + done.stderr
        ours = [ln for ln in done.stdout.splitlines() + done.stderr.splitlines()
                if ln.startswith("fmnist train: error:")]  # fmt: skip
        assert ours == [
            "fmnist train: error: params.yaml: train.epochs: Input should be greater than 0 (got 0)"
        ]
        status = run("git", "status", "--porcelain").stdout.splitlines()
        assert status == [" M params.yaml"], status  # no deletions, nothing else changed
    finally:
        run("git", "checkout", "--", "params.yaml")


def _store_runs(repo: Path) -> list:
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_training_killed_mid_fit_is_closed_by_the_next_repro(
    pipeline: tuple[Path, Runner],
) -> None:
    repo, run = pipeline
    _set_param(repo, "  epochs: 5", "  epochs: 3")  # train must run again
    before = {r.info.run_id for r in _store_runs(repo)}
    from tests.integration.conftest import runner_env

    dvc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"], cwd=repo, env=runner_env(repo),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        deadline = time.monotonic() + 300
        killed_run = None
        while killed_run is None:
            assert time.monotonic() < deadline and dvc.poll() is None, "no training started"
            for r in _store_runs(repo):
                new = r.info.run_id not in before and r.info.status == "RUNNING"
                if new and client.get_metric_history(r.info.run_id, "loss"):
                    killed_run = r.info.run_id
            time.sleep(0.3)
        trainer = next(
            c for c in psutil.Process(dvc.pid).children(recursive=True)
            if "train" in c.cmdline() and any("fmnist" in part for part in c.cmdline())
        )  # fmt: skip
        trainer.send_signal(signal.SIGKILL)
        assert dvc.wait(timeout=120) == 255  # DVC's exit for a stage command that failed
    finally:
        if dvc.poll() is None:
            os.killpg(dvc.pid, signal.SIGKILL)
    assert client.get_run(killed_run).info.status == "RUNNING"  # nothing could end it

    run("dvc", "repro")
    killed = client.get_run(killed_run)
    assert killed.info.status == "KILLED" and "was gone" in killed.data.tags[NOTE_TAG]
    assert [r.info.run_id for r in _store_runs(repo) if r.info.status == "RUNNING"] == []
    registered = json.loads((repo / "models" / "registered.json").read_text())
    assert client.get_run(registered["run_id"]).info.status == "FINISHED"


# ---------------------------------------------------------------- a registry that lies


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("registry-server")
    with running_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder) as url:
        yield url


def _lying_proxy(upstream: str, fail_prefix: str) -> http.server.ThreadingHTTPServer:
    """Forwards every request to upstream, but answers 500 to paths starting fail_prefix."""

    class Proxy(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.path.startswith(fail_prefix):
                body = b'{"error_code": "INTERNAL_ERROR", "message": "injected fault"}'
                self.send_response(500)
            else:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                request = urllib.request.Request(
                    upstream + self.path, data=data, method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )  # fmt: skip
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(request, timeout=30) as response:
                        status, body = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def test_a_failing_champion_lookup_moves_nothing(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist.registry.champion import promote

    name = "fashion-mnist"
    import mlflow

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("lying-registry")
    for accuracy in ("0.8500", "0.7000"):  # two FINISHED runs' models, as train logs them
        run_id = client.create_run(experiment).info.run_id
        model = mlflow.initialize_logged_model(
            name="model", source_run_id=run_id, experiment_id=experiment
        )
        mlflow.finalize_logged_model(model.model_id, "READY")
        client.set_terminated(run_id, "FINISHED")
        mlflow.register_model(f"models:/{model.model_id}", name, tags={"test_accuracy": accuracy})
    rule = {"min_accuracy": 0.5, "min_delta": 0.001}
    assert promote(mlflow_server, name, 1, **rule, require_better=True).promote
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    proxy = _lying_proxy(mlflow_server, "/api/2.0/mlflow/registered-models/alias")
    try:
        uri = f"http://127.0.0.1:{proxy.server_address[1]}"
        with pytest.raises(TrackingError, match=r"^fashion-mnist: looking up @champion: "):
            promote(uri, name, 2, **rule, require_better=True)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    assert "fmnist.promotion.promoted" not in client.get_model_version(name, "2").tags
    assert tickets(client, name) == []  # the lock released
