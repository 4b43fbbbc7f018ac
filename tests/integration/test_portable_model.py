"""The registered champion travels: MLflow's own tools load and serve it from environments
that hold MLflow (and the model's declared requirements) but nothing of fmnist.

A deployment host is played by a fresh venv made with uv: `mlflow models serve
--env-manager uv` builds the model's environment from what the model itself declares;
`--env-manager local` and `mlflow.pyfunc.load_model` run in a venv holding only MLflow plus
the model's requirements.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from fmnist import stack
from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist_model.images import scale_images
from tests.integration.test_serving import _post
from tests.scoring_helpers import train_evaluate_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CHAMPION = "models:/fashion-mnist@champion"


@dataclass(frozen=True)
class Host:
    """A venv holding MLflow only, and the environment to run its commands in."""

    python: Path
    env: dict[str, str]
    pixels: np.ndarray  # (n, 28, 28) uint8 raw test images
    expected: np.ndarray  # (n,) class ids the trained Keras model predicts for them
    store: Path  # the folder of the MLflow store


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is missing: run `make setup`"
    return found


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    """A champion trained on synthetic data in a fresh store, and a venv with only MLflow."""
    base = tmp_path_factory.mktemp("portable")
    store, venv = base / "store", base / "mlflow-only"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    params = _tiny_champion_params()
    prepared = _prepared(base, params)
    train = train_evaluate_register(params, prepared, store, uri)

    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    mlflow_pin = f"mlflow=={version('mlflow')}"
    subprocess.run([_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    mlflow_pin], check=True, timeout=600)  # fmt: skip
    # uv finds the model's Python version (python_env.yaml: this interpreter's) on PATH.
    path = os.pathsep.join([str(venv / "bin"), str(Path(_uv()).parent),
                            str(Path(sys.base_prefix) / "bin"), os.environ["PATH"]])  # fmt: skip
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": uri, "PYTHONNOUSERSITE": "1"}
    env.pop("VIRTUAL_ENV", None)
    pixels, _ = load_split(prepared / "test.npz")
    import keras

    expected = keras.models.load_model(train.model).predict(
        scale_images(pixels).reshape(-1, 784), verbose=0
    )
    return Host(venv / "bin" / "python", env, pixels, expected.argmax(axis=1), store)


def _tiny_champion_params() -> Params:
    from fmnist.params.config import parse_params

    return parse_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "steps_per_execution": 4, "seed": 7},
            "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
            "register": {"min_accuracy": 0.0},
        }
    )


def _prepared(base: Path, params: Params) -> Path:
    from fmnist.data import prepare as prepare_stage
    from tests.conftest import synthetic_images, write_raw

    arrays = {"train": synthetic_images(300, seed=5), "test": synthetic_images(100, seed=4)}
    raw = write_raw(base / "raw", arrays)
    prepare_stage.run(params, raw, base / "prepared")
    return base / "prepared"


def _run(host: Host, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=host.env, cwd=host.store, capture_output=True, text=True, timeout=timeout
    )


def test_the_host_holds_mlflow_and_nothing_of_fmnist(host: Host) -> None:
    for module in ("fmnist", "fmnist_model", "tensorflow", "keras"):
        probe = _run(host, str(host.python), "-c", f"import {module}")
        assert probe.returncode == 1, probe.stderr
        assert f"ModuleNotFoundError: No module named '{module}'" in probe.stderr, module


@pytest.fixture(scope="module")
def uv_server(host: Host) -> Iterator[str]:
    """`mlflow models serve --env-manager uv` of the champion, from the MLflow-only venv."""
    port = stack.free_port()
    log_path = host.store / "serve-uv.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(host.python), "-m", "mlflow", "models", "serve", "-m", CHAMPION,
             "--env-manager", "uv", "--host", "127.0.0.1", "--port", str(port)],
            env=host.env, cwd=host.store, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 900  # a cold uv cache downloads TensorFlow
        while not stack.healthy(f"{url}/ping"):
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the uv-built scoring server did not answer"
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_served_with_env_manager_uv_takes_both_image_forms(host: Host, uv_server: str) -> None:
    n = len(host.pixels)
    for inputs in (host.pixels, host.pixels.reshape(n, 784)):
        status, body = _post(uv_server, {"inputs": inputs.tolist()})
        assert status == 200, body
        assert [p["class_id"] for p in body["predictions"]] == list(host.expected)
    status, body = _post(uv_server, {"inputs": [[7] * 783]})
    assert status == 400 and "784 pixels or be 28x28" in body["message"], body


@pytest.fixture(scope="module")
def with_requirements(host: Host) -> Host:
    """The MLflow-only venv plus the requirements the champion declares, nothing else."""
    listed = _run(host, str(host.python), "-m", "mlflow", "artifacts", "download",
                  "-u", CHAMPION, "-d", str(host.store / "champion"))  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    model_dir = Path(listed.stdout.strip().splitlines()[-1])
    requirements = (model_dir / "requirements.txt").read_text()
    assert "fmnist" not in requirements and "tensorflow" in requirements
    assert not (model_dir / "uv.lock").exists() and not (model_dir / "pyproject.toml").exists()
    requirements_file = str(model_dir / "requirements.txt")
    subprocess.run([_uv(), "pip", "install", "-q", "--python", str(host.python),
                    "-r", requirements_file], check=True, timeout=900)  # fmt: skip
    return host


def test_mlflow_models_predict_with_env_manager_local(with_requirements: Host) -> None:
    host = with_requirements
    request = host.store / "request.json"
    request.write_text(json.dumps({"inputs": host.pixels.tolist()}))
    done = _run(host, str(host.python), "-m", "mlflow", "models", "predict", "-m", CHAMPION,
                "--env-manager", "local", "-i", str(request), "-t", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(done.stdout.strip().splitlines()[-1])["predictions"]
    assert [p["class_id"] for p in predictions] == list(host.expected)


LOAD_BOTH_WAYS = """
import json, sys
import numpy as np, mlflow.pyfunc
pixels = np.array(json.load(open(sys.argv[1])), dtype=np.uint8)
model = mlflow.pyfunc.load_model(sys.argv[2])
ids = list(model.predict(pixels)["class_id"])
# The .keras file alone, as the model's metadata says: Keras, plus the shipped name fix.
local = mlflow.artifacts.download_artifacts(sys.argv[2])
sys.path.insert(0, local + "/code")
from fmnist_model.unicode_names import allow_unicode_names
import keras
allow_unicode_names()
keras_model = keras.models.load_model(local + "/artifacts/model.keras", compile=False)
keras_ids = keras_model.predict(pixels.reshape(len(pixels), 784) / 255.0, verbose=0).argmax(1)
print(json.dumps({"pyfunc": [int(i) for i in ids], "keras": [int(i) for i in keras_ids],
                  "name": keras_model.name}))
"""


def test_pyfunc_and_the_keras_file_load_where_fmnist_is_not_installed(
    with_requirements: Host,
) -> None:
    host = with_requirements
    pixels = host.store / "pixels.json"
    pixels.write_text(json.dumps(host.pixels.tolist()))
    done = _run(host, str(host.python), "-c", LOAD_BOTH_WAYS, str(pixels), CHAMPION)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pyfunc"] == result["keras"] == list(host.expected)
    assert result["name"] == "패션 MNIST 모델"
