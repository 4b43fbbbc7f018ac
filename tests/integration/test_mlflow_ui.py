"""The MLflow UI in a real browser: Debian's Chromium, headless, against a real MLflow server.

The store holds two registered versions made by the project's own code (runs with the Keras
summary artifact, versions with test metrics, `champion` set by the promotion rule).
Screenshots are kept in tests/outputs/mlflow-ui/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fmnist import stack, tracking
from fmnist.champion import promote
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTPUTS = REPO / "tests" / "outputs" / "mlflow-ui"
SUMMARY = 'Model: "패션 MNIST 모델"\n Total params: 79,510 (310.59 KB)\n'
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--window-size=1400,1000", "--virtual-time-budget=20000",
]  # fmt: skip


@dataclass
class Ui:
    url: str
    experiment_id: str
    run_ids: list[str]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Debian's chromium is not installed (`make browser` installs it)")
    return found


def _store(uri: str, artifacts: Path) -> tuple[str, list[str]]:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("fashion-mnist", artifacts.as_uri())
    client = MlflowClient(uri)
    client.create_registered_model("fashion-mnist")
    run_ids = []
    for accuracy in (0.8592, 0.8731):
        with tracking.tracked_run(uri, "fashion-mnist") as run_id:
            tracking.log_text(SUMMARY, tracking.SUMMARY_ARTIFACT)
            tracking.log_metrics({"test_accuracy": accuracy})
        version = client.create_model_version(
            "fashion-mnist", f"runs:/{run_id}/model", run_id=run_id,
            tags={"test_accuracy": f"{accuracy:.4f}"},
        )  # fmt: skip
        promote(uri, "fashion-mnist", int(version.version), min_accuracy=0.8, min_delta=0.001,
                require_better=True)  # fmt: skip
        run_ids.append(run_id)
    return experiment, run_ids


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("mlflow-ui")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment, run_ids = _store(uri, tmp / "mlruns")
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", uri, "--workers", "1"],
        stdout=(tmp / "server.log").open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not stack.healthy(f"{url}/health"):
            assert server.poll() is None, (tmp / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "MLflow server did not answer"
            time.sleep(0.5)
        yield Ui(url, experiment, run_ids)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _render(page: str, name: str) -> str:
    """The page's DOM after its scripts ran, and a screenshot kept as a test output."""
    chromium = _chromium()
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    shot = OUTPUTS / f"{name}.png"
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--screenshot={shot}", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, "--dump-dom", page],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dom.stdout


def test_registered_model_page_shows_both_versions_and_the_champion(ui: Ui) -> None:
    dom = _render(f"{ui.url}/#/models/fashion-mnist", "registered-model")
    assert "Version 1" in dom
    assert "Version 2" in dom
    assert "champion" in dom
    assert "challenger" not in dom  # only what the store holds


def test_run_page_lists_the_summary_artifact(ui: Ui) -> None:
    page = f"{ui.url}/#/experiments/{ui.experiment_id}/runs/{ui.run_ids[0]}/artifacts"
    dom = _render(page, "run-artifacts")
    assert tracking.SUMMARY_ARTIFACT in dom
