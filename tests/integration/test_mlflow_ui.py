"""The MLflow UI in a real browser: Debian's Chromium, headless, against a real MLflow server.

The store is made by the pipeline's own stages (prepare, train, evaluate, register) on tiny
synthetic data: two trainings, so two registered versions, each with its run's datasets, its
model card and the promotion rule's decision (v1 `champion`; v2 `challenger`, which cannot
beat v1's perfect score here). Pages that need a click are driven over Chromium's DevTools
protocol. Screenshots are kept in tests/outputs/mlflow-ui/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fmnist import stack
from fmnist.pipeline.lineage import dir_md5
from fmnist.pipeline.records import read_trained
from fmnist.process import layout
from fmnist.process.files import file_digest
from fmnist.tracking import runs as tracking
from tests.conftest import REPO, dvc_project, record_output, synthetic_images, write_raw
from tests.integration.conftest import mlflow_server as running_mlflow_server
from tests.training.outputs import evaluate_outputs, train_outputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTPUTS = REPO / "tests" / "outputs" / "mlflow-ui"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--window-size=1400,1000",
]  # fmt: skip
RENDER_FLAGS = [*CHROMIUM_FLAGS, "--virtual-time-budget=20000"]  # --screenshot, --dump-dom
PROMOTED, REASON = "fmnist.promotion.promoted", "fmnist.promotion.reason"  # version tags
PREPARED = Path("data/prepared")  # as dvc.yaml names it: the stages run in the store's root


@dataclass
class Ui:
    url: str
    experiment_id: str
    run_ids: list[str]
    root: Path  # where the stages ran: data/prepared, dvc.lock
    uri: str  # the server's store


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Debian's chromium is not installed (`make browser` installs it)")
    return found


def _lock(root: Path) -> None:
    """A real DVC project at root whose prepare stage's output is data/prepared, committed
    (dvc.lock and the cache, as `dvc repro prepare` leaves them), so the runs name its hash."""
    stages = f"  prepare:\n    cmd: 'true'\n    outs:\n      - {PREPARED.as_posix()}\n"
    dvc_project(root, stages)
    record_output(root, "prepare")


def _store(root: Path, uri: str) -> tuple[str, list[str]]:
    """Two trainings of the tutorial's model (2 and 3 epochs) through the pipeline's stages."""
    from fmnist.data import prepare
    from fmnist.params.config import parse_params
    from fmnist.registry import register
    from fmnist.training import evaluate, train

    arrays = {"train": synthetic_images(300, seed=1), "test": synthetic_images(100, seed=2)}
    raw = write_raw(root / "raw", arrays)
    run_ids = []
    with contextlib.chdir(root):
        prepare.run(parse_params({}), raw, PREPARED)
        _lock(root)
        for epochs in (2, 3):
            params = parse_params({"train": {"epochs": epochs, "batch_size": 16}})
            out, where = train_outputs(root / f"e{epochs}"), root / f"e{epochs}"
            train.run(params, PREPARED, out, uri, root)
            evaluate.run(params, out.model, PREPARED, out.trained, evaluate_outputs(where), uri)
            register.run(params, out.trained, where / "metrics/evaluate.json", out.summary,
                         where / "registered.json", uri)  # fmt: skip
            run_ids.append(read_trained(out.trained)["run_id"])
    return tracking.ensure_experiment(uri, "fashion-mnist"), run_ids


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("mlflow-ui")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    experiment, run_ids = _store(tmp, uri)
    with running_mlflow_server(uri, tmp / "server") as url:
        yield Ui(url, experiment, run_ids, tmp, uri)


def _render(page: str, name: str) -> str:
    """The page's DOM after its scripts ran, and a screenshot kept as a test output."""
    chromium = _chromium()
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    shot = OUTPUTS / f"{name}.png"
    subprocess.run(
        [chromium, *RENDER_FLAGS, f"--screenshot={shot}", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    dom = subprocess.run(
        [chromium, *RENDER_FLAGS, "--dump-dom", page],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return dom.stdout


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A headless Chromium (its own profile) taking DevTools commands: its websocket URL."""
    port = stack.free_port()
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield _devtools_socket(port, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _devtools_socket(port: int, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version") as answer:
                return str(json.load(answer)["webSocketDebuggerUrl"])
        except OSError:
            assert process.poll() is None, "Chromium ended before it took DevTools commands"
            assert time.monotonic() < deadline, "Chromium took no DevTools commands in 60 s"
            time.sleep(0.2)


@dataclass
class Tab:
    """One browser tab over the DevTools protocol (websockets' sync client, Prefect's dep)."""

    socket: Any
    session: str | None = None
    sent: int = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.sent += 1
        session = {"sessionId": self.session} if self.session else {}
        self.socket.send(
            json.dumps({"id": self.sent, "method": method, "params": params} | session)
        )
        while (reply := json.loads(self.socket.recv(timeout=60))).get("id") != self.sent:
            pass  # an event
        assert "error" not in reply, f"{method}: {reply['error']}"
        return dict(reply["result"])

    def evaluate(self, script: str) -> Any:
        found = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        return found["result"].get("value")

    def wait_for(self, script: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := self.evaluate(script)):
            assert time.monotonic() < deadline, f"the page never got to: {script}"
            time.sleep(0.25)
        return found

    def screenshot(self, name: str) -> Path:
        OUTPUTS.mkdir(parents=True, exist_ok=True)
        shot = OUTPUTS / f"{name}.png"
        shot.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return shot

    def dom(self) -> str:
        """The DOM as it is now (what --dump-dom prints once the page's scripts ran)."""
        return str(self.evaluate("document.documentElement.outerHTML"))


@contextlib.contextmanager
def _tab(browser: str, page: str, height: int = 1000) -> Iterator[Tab]:
    from websockets.sync.client import connect

    with connect(browser, max_size=None) as socket:
        tab = Tab(socket)
        target = tab.call("Target.createTarget", url="about:blank")["targetId"]
        tab.session = tab.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tab.call("Emulation.setDeviceMetricsOverride", width=1400, height=height,
                 deviceScaleFactor=1, mobile=False)  # fmt: skip
        tab.call("Page.navigate", url=page)
        yield tab


def test_registered_model_page_shows_both_versions_and_the_champion(ui: Ui) -> None:
    dom = _render(f"{ui.url}/#/models/fashion-mnist", "registered-model")
    assert "Version 1" in dom
    assert "Version 2" in dom
    assert "champion" in dom  # v1, the first good version (or v2, if it beat v1)
    assert "challenger" in dom  # v2, the newest


def test_run_page_lists_the_summary_artifact(ui: Ui) -> None:
    page = f"{ui.url}/#/experiments/{ui.experiment_id}/runs/{ui.run_ids[0]}/artifacts"
    dom = _render(page, "run-artifacts")
    assert tracking.SUMMARY_ARTIFACT in dom


def test_the_experiment_opens_on_its_runs(ui: Ui) -> None:
    """fmnist tags its experiments custom model development (what MLflow 3's UI reads for
    an experiment's kind); MLflow 3.17's UI decides by its GenAI / Model training switch,
    which the link sets (README's link), and then opens the experiment on its runs."""
    from mlflow import MlflowClient

    tags = MlflowClient(ui.uri).get_experiment(ui.experiment_id).tags
    assert tags[tracking.KIND_TAG] == tracking.MODEL_DEVELOPMENT
    page = f"{ui.url}/#/experiments/{ui.experiment_id}?workflowType=machine_learning"
    dom = _render(page, "experiment-runs")
    assert "rmsprop-sigmoid-2ep" in dom and "rmsprop-sigmoid-3ep" in dom  # the runs table
    assert "matching runs" in dom
    assert "Tool calls" not in dom and "Detect Issues" not in dom  # the GenAI overview's


def test_a_training_run_shows_the_three_datasets_it_used(ui: Ui, browser: str) -> None:
    page = f"{ui.url}/#/experiments/{ui.experiment_id}/runs/{ui.run_ids[0]}"
    with _tab(browser, page) as tab:
        tab.wait_for(  # the run's Datasets entry, once there, clicked: the datasets drawer
            "(() => { const e = [...document.querySelectorAll('[role=button]')]"
            ".find(e => e.textContent.startsWith('fashion-mnist-train (')); e?.click();"
            " return Boolean(e); })()"
        )
        tab.wait_for("document.body.innerText.includes('3 datasets used')")
        tab.wait_for("document.body.innerText.includes('Path: data/prepared/train.npz@')")
        tab.screenshot("run-datasets")
        dom = tab.dom()
    version = dir_md5(ui.root / PREPARED)
    for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
        digest = file_digest(ui.root / PREPARED / f"{split}.npz")
        assert f"fashion-mnist-{split} ({digest})" in dom
        assert f">{context}<" in dom
    assert f"data/prepared/train.npz@{version}" in dom  # the DVC path and data/prepared's hash
    assert "num rows: <strong>240</strong>" in dom  # its profile: rows of the training split


def test_a_version_page_shows_its_model_card(ui: Ui, browser: str) -> None:
    from mlflow import MlflowClient

    run_id = ui.run_ids[1]
    images = (
        "[...document.images].filter(i => (i.getAttribute('src') || '').startsWith('get-artifact'))"
    )
    with _tab(browser, f"{ui.url}/#/models/fashion-mnist/versions/2", height=3400) as tab:
        tab.wait_for("[...document.querySelectorAll('h3')].some(h => h.textContent === 'Params')")
        loaded = tab.wait_for(  # both images fetched from the server and decoded
            f"(() => {{ const found = {images};"
            " return found.length === 2 && found.every(i => i.complete && i.naturalWidth > 0)"
            " && found.map(i => [i.getAttribute('src'), i.naturalWidth]); })()"
        )
        tab.screenshot("model-card")
        dom = tab.dom()
    assert dict(loaded) == {
        f"get-artifact?path=evaluation%2Fconfusion.png&run_uuid={run_id}": 800,
        f"get-artifact?path=training%2Fcurves.png&run_uuid={run_id}": 800,
    }  # the images' widths in pixels, as evaluate drew them
    assert re.findall(r"<h3[^>]*>([^<]+)</h3>", dom) == [
        "Intended use", "Promotion", "Test metrics", "Per class (test)",
        "Confusion matrix (test)", "Training curves", "Data", "Params", "Keras summary",
    ]  # fmt: skip
    assert "<p>패션 MNIST 모델: a Fashion-MNIST classifier (Keras) with test_accuracy" in dom
    tags = MlflowClient(ui.uri).get_model_version("fashion-mnist", "2").tags
    verdict = "promoted to <code>champion</code>" if tags[PROMOTED] == "true" else "not promoted"
    assert f"<strong>{verdict}</strong>: {tags[REASON]}" in dom  # the rule's, as registered
    assert dir_md5(ui.root / PREPARED) in dom and layout.CURVES_ARTIFACT.replace("/", "%2F") in dom
