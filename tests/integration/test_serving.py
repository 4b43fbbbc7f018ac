"""The champion served by `fmnist serve` (MLflow's scoring server) and `fmnist predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import stack
from fmnist.config import Params
from fmnist.stages import (
    EvaluateOutputs,
    TrainOutputs,
    load_split,
    run_evaluate,
    run_register,
    run_train,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@dataclass
class Served:
    url: str
    model: Path
    test_x: np.ndarray  # (n, 28, 28) float32 in [0, 1]
    env: dict[str, str]
    params: Path


@pytest.fixture
def served(tmp_path: Path, prepared_dir: Path, tiny_params: Params) -> Iterator[Served]:
    """A champion trained on synthetic data (rule threshold 0), served on a free port."""
    params = tiny_params.model_copy(
        update={"register_": tiny_params.register_.model_copy(update={"min_accuracy": 0.0})}
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    m = tmp_path / "models"
    train = TrainOutputs(m / "model.keras", m / "summary.txt", m / "run.json",
                         tmp_path / "history.csv", tmp_path / "train.json")  # fmt: skip
    run_train(params, prepared_dir, train, uri, tmp_path)
    evaluate = EvaluateOutputs(tmp_path / "evaluate.json", tmp_path / "classes.json",
                               tmp_path / "confusion.csv", tmp_path / "confusion.png")  # fmt: skip
    run_evaluate(params, train.model, prepared_dir, train.run, evaluate, uri)
    record = run_register(params, train.run, tmp_path / "evaluate.json", train.summary,
                          m / "registered.json", uri)  # fmt: skip
    assert record["promoted"], record
    params_file = tmp_path / "params.yaml"
    params_file.write_text("register:\n  min_accuracy: 0.0\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    port = stack.free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "fmnist"), "serve", "--port", str(port), "--params", str(params_file)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not stack.healthy(f"{url}/ping"):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the scoring server did not answer"
            time.sleep(0.5)
        x, _ = load_split(prepared_dir / "test.npz")
        yield Served(url, train.model, x, env, params_file)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _post(url: str, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_served_predictions_equal_the_offline_models(served: Served) -> None:
    import keras

    raw = np.rint(served.test_x[:20] * 255).astype(int)  # (20, 28, 28) raw pixels, as in IDX
    status, body = _post(served.url, {"inputs": raw.reshape(20, 784).tolist()})
    assert status == 200, body
    offline = keras.models.load_model(served.model).predict(
        served.test_x[:20].reshape(20, 784), verbose=0
    )
    predictions = body["predictions"]
    assert [p["class_id"] for p in predictions] == list(offline.argmax(axis=1))
    assert np.allclose([p["Ankle boot"] for p in predictions], offline[:, 9], atol=1e-5)


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ([[0] * 783], "784"),  # wrong shape
        ([["white"] * 784], ""),  # wrong type
        ([[300] * 784], "0-255"),  # outside 0-255
        ([[-1] * 784], "0-255"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_message(
    served: Served, inputs: list, says: str
) -> None:
    status, body = _post(served.url, {"inputs": inputs})
    assert 400 <= status < 500, (status, body)
    assert says in body.get("message", ""), body


def test_predict_classifies_png_files(served: Served, tmp_path: Path) -> None:
    raw = np.rint(served.test_x[:2] * 255).astype(np.uint8)
    Image.fromarray(raw[0], mode="L").save(tmp_path / "a.png")
    Image.fromarray(raw[1], mode="L").resize((56, 56)).save(tmp_path / "big.png")
    (tmp_path / "not.png").write_text("hello")
    result = subprocess.run(
        [str(BIN / "fmnist"), "predict", "--params", str(served.params),
         str(tmp_path / "a.png"), str(tmp_path / "big.png")],
        env=served.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a.png'}: ")
    assert "resized from 56x56" in lines[1]
    bad = subprocess.run(
        [str(BIN / "fmnist"), "predict", "--params", str(served.params), str(tmp_path / "not.png")],
        env=served.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "not an image" in bad.stderr
