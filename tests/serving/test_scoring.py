"""fmnist's scoring app around a real registered champion (the self-contained pyfunc), and
`run_predict` on PNG files of every form."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmnist.process.errors import FmnistError, TrackingError
from fmnist.serving.loading import (
    ModelHolder,
    ServedModel,
    load_champion,
    load_version,
    run_predict,
)
from fmnist.serving.server import DEFAULT_MAX_REQUEST_MB, INTERNAL_ERROR, bind, create_app
from tests.scoring_helpers import (
    MODEL_NAME,
    PNG_FORMS,
    Champion,
    real_test_images,
    register_champion,
    save_png,
)

with warnings.catch_warnings():  # Starlette 1 would rather see httpx2 than httpx (works)
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.slow
LIMIT = 100_000  # bytes: small, so the limit is cheap to cross


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return register_champion(tmp_path_factory.mktemp("champion"))


@pytest.fixture(scope="module")
def served(champion: Champion) -> ServedModel:
    return load_champion(champion.tracking_uri, MODEL_NAME)


@pytest.fixture(scope="module")
def expected(champion: Champion) -> np.ndarray:
    """(100, 10) probabilities of the trained Keras model itself."""
    import keras

    x = champion.pixels.reshape(-1, 784).astype(np.float32) / 255
    return keras.models.load_model(champion.keras_file).predict(x, verbose=0)


@pytest.fixture
def holder(served: ServedModel) -> ModelHolder:
    return ModelHolder(served)


@pytest.fixture
def client(holder: ModelHolder) -> Iterator[TestClient]:
    with TestClient(create_app(holder, LIMIT), raise_server_exceptions=False) as test_client:
        yield test_client


def _refusal(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    message = body["message"]
    assert "\n" not in message and len(message) < 200 and "Traceback" not in message
    assert response.headers["X-Model-Version"] == "1"
    return str(message)


def _csv(pixels: np.ndarray) -> str:
    return "\n".join(",".join(map(str, row)) for row in pixels.reshape(len(pixels), 784))


@pytest.mark.slow  # Keras/TensorFlow
@pytest.mark.parametrize("form", ["inputs-784", "inputs-28x28", "instances", "split", "csv"])
def test_every_request_form_gets_the_models_predictions(
    client: TestClient, champion: Champion, expected: np.ndarray, form: str
) -> None:
    pixels = champion.pixels[:5]
    rows = pixels.reshape(5, 784).tolist()
    if form == "csv":
        response = client.post(
            "/invocations", content=_csv(pixels), headers={"Content-Type": "text/csv"}
        )
    else:
        body = {
            "inputs-784": {"inputs": rows},
            "inputs-28x28": {"inputs": pixels.tolist()},
            "instances": {"instances": pixels.tolist()},
            "split": {"dataframe_split": {"columns": [f"p{i}" for i in range(784)], "data": rows}},
        }[form]
        response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    answer = response.json()
    assert answer["model_version"] == 1
    predictions = answer["predictions"]
    assert [p["class_id"] for p in predictions] == expected[:5].argmax(axis=1).tolist()
    assert np.allclose([p["Ankle boot"] for p in predictions], expected[:5, 9], atol=1e-5)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([[0] * 783], "each image must have 784 pixels or be 28x28, got shape (1, 783)"),
        ([[300] * 784], "pixel values must lie in 0-255 (raw, unscaled)"),
        ([[0.5] * 784], "pixel values must be whole numbers 0-255 (raw, unscaled)"),
        ([["12"] * 784], "pixels must be numbers 0-255, got text values"),
        ([[True] * 784], "pixels must be numbers 0-255, got boolean values"),
        ([[1] * 783 + [True]], "pixels must be numbers 0-255, got boolean values"),
        ([[None] * 784], "pixels must be numbers 0-255, got mixed or text values"),
    ],
)
def test_bad_pixels_get_400_with_the_models_own_line(
    client: TestClient, values: list, says: str
) -> None:
    response = client.post("/invocations", json={"inputs": values})
    assert _refusal(response, 400) == says
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_long_bad_row_is_not_echoed(client: TestClient) -> None:
    # MLflow's server answered this with "Failed to predict data '<the whole array>'".
    response = client.post("/invocations", json={"inputs": [[137] * 783]})
    assert "137, 137" not in _refusal(response, 400)


def test_malformed_json_and_other_types_are_one_line(client: TestClient) -> None:
    response = client.post(
        "/invocations", content=b'{"inputs": [[1, 2', headers={"Content-Type": "application/json"}
    )
    assert _refusal(response, 400) == "malformed JSON: Expecting ',' delimiter at line 1, column 18"
    response = client.post("/invocations", content=b"1,2", headers={"Content-Type": "text/plain"})
    assert _refusal(response, 415).startswith("Content-Type must be application/json")


def test_bodies_over_the_limit_get_413_declared_or_streamed(client: TestClient) -> None:
    big = b"[" + b"0, " * LIMIT + b"0]"
    declared = client.post("/invocations", content=big, headers={"Content-Type": "text/csv"})
    assert "over 0.1 MB" in _refusal(declared, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 10_000):
            yield big[start : start + 10_000]

    streamed = client.post("/invocations", content=chunks(), headers={"Content-Type": "text/csv"})
    assert "over 0.1 MB" in _refusal(streamed, 413)
    assert streamed.json()["error_code"] == "REQUEST_TOO_LARGE"


def test_unknown_paths_and_methods_are_json_lines(client: TestClient) -> None:
    assert "no such endpoint" in _refusal(client.get("/predict"), 404)
    wrong = client.get("/invocations")
    assert _refusal(wrong, 405) == "method not allowed here (allowed: POST)"
    assert wrong.headers["Allow"] == "POST"


@pytest.mark.slow  # Keras/TensorFlow
def test_ping_health_and_version_say_the_version(client: TestClient) -> None:
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    version = client.get("/version").json()
    assert version == {"name": MODEL_NAME, "model_version": 1, "alias": "champion"}


@pytest.mark.slow  # Keras/TensorFlow
def test_a_swapped_model_answers_from_the_next_request(
    client: TestClient, holder: ModelHolder, served: ServedModel, champion: Champion
) -> None:
    previous = holder.swap(replace(served, version=7))
    assert previous.version == 1
    response = client.post("/invocations", json={"inputs": champion.pixels[:1].tolist()})
    assert response.headers["X-Model-Version"] == "7" and response.json()["model_version"] == 7
    assert client.get("/version").json()["model_version"] == 7


class _Waiting:
    """A model whose predict waits for `release` (a request under way at a swap)."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, pixels: np.ndarray) -> Any:
        import pandas as pd

        self.entered.set()
        assert self.release.wait(60)
        return pd.DataFrame({"class_id": [0] * len(pixels)})


def test_a_request_under_way_at_a_swap_is_answered_and_named_by_its_own_version() -> None:
    old, new = _Waiting(), _Waiting()
    new.release.set()
    holder = ModelHolder(ServedModel(MODEL_NAME, 1, old))
    answers: dict[str, Any] = {}
    with TestClient(create_app(holder, LIMIT)) as test_client:

        def post(key: str) -> None:
            answers[key] = test_client.post("/invocations", json={"inputs": [[0] * 784]})

        under_way = threading.Thread(target=post, args=("under way",))
        under_way.start()
        assert old.entered.wait(60)  # v1 is predicting
        assert holder.swap(ServedModel(MODEL_NAME, 2, new)).version == 1
        post("after")
        old.release.set()
        under_way.join(60)
    for key, version in (("under way", 1), ("after", 2)):
        response = answers[key]
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == str(version)
        assert response.json()["model_version"] == version


class _Broken:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def predict(self, pixels: np.ndarray) -> None:
        raise self.error


def test_a_bug_is_500_with_one_line_and_the_traceback_only_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = ServedModel(MODEL_NAME, 1, _Broken(RuntimeError("/opt/secret/install/path")))
    app = create_app(ModelHolder(broken), LIMIT)
    with TestClient(app) as test_client, caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        response = test_client.post("/invocations", json={"inputs": [[0] * 784]})
    assert _refusal(response, 500) == INTERNAL_ERROR
    assert "/opt/secret" not in response.text
    assert any("/opt/secret" in str(r.exc_info) for r in caplog.records)


@pytest.mark.slow  # Keras/TensorFlow
def test_a_long_model_error_is_cut_to_its_first_line(champion: Champion) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    long = MlflowException("bad input " + "x" * 500 + "\nsecond line", INVALID_PARAMETER_VALUE)
    broken = ServedModel(MODEL_NAME, 1, _Broken(long))
    with TestClient(create_app(ModelHolder(broken), LIMIT)) as test_client:
        response = test_client.post("/invocations", json={"inputs": [[0] * 784]})
    message = _refusal(response, 400)
    assert message.startswith("bad input xxx") and message.endswith("...")


@pytest.mark.slow  # Keras/TensorFlow
def test_run_predict_gives_every_png_form_the_same_predictions(
    champion: Champion, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    images = real_test_images(200)
    paths = [save_png(px, form, tmp_path / f"{i}-{form.replace(';', '')}.png")
             for form in PNG_FORMS for i, px in enumerate(images)]  # fmt: skip
    params = _params(champion)
    _, rows = run_predict(params, paths, champion.tracking_uri)
    by_form = np.array([(r["label"], round(r["probability"], 6)) for r in rows]).reshape(
        len(PNG_FORMS), 200, 2
    )
    assert (by_form == by_form[0]).all()  # identical for every form
    direct = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1").predict(images)
    assert by_form[0, :, 0].tolist() == list(direct["label"])


@pytest.mark.slow  # Keras/TensorFlow
def test_load_version_loads_that_version_into_a_folder_it_makes(
    champion: Champion, tmp_path: Path
) -> None:
    loaded = load_version(champion.tracking_uri, MODEL_NAME, 1, tmp_path / "new" / "v1")
    assert loaded.version == 1 and (tmp_path / "new" / "v1" / "MLmodel").is_file()
    assert len(loaded.predict(champion.pixels[:3])) == 3
    with pytest.raises(TrackingError, match=f"^models:/{MODEL_NAME}/99: "):
        load_version(champion.tracking_uri, MODEL_NAME, 99)


@pytest.mark.slow  # Keras/TensorFlow
def test_load_champion_without_one_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="has no @champion yet"):
        load_champion(f"sqlite:///{tmp_path / 'empty.db'}", MODEL_NAME)


def test_a_busy_port_is_one_line() -> None:
    with bind("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FmnistError, match=f"cannot listen on 127.0.0.1:{port} "):
            bind("127.0.0.1", port)


def test_the_cli_default_limit_is_the_documented_one() -> None:
    import inspect

    from fmnist.cli.serving import serve

    default = inspect.signature(serve).parameters["max_request_mb"].default
    assert default == DEFAULT_MAX_REQUEST_MB
    sized = json.dumps({"inputs": np.full((10_000, 28, 28), 255).tolist()})
    assert len(sized) < DEFAULT_MAX_REQUEST_MB * 1e6  # 10,000 images at their largest


def _params(champion: Champion) -> Any:
    from fmnist.params.config import load_params

    return load_params(champion.params_file)
