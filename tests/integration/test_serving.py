"""The champion served by `fmnist serve` (fmnist's scoring server, a real subprocess) and
classified by `fmnist predict`."""

from __future__ import annotations

import contextlib
import http.client
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

from fmnist import stack
from tests.scoring_helpers import (
    PNG_FORMS,
    Champion,
    raw_png,
    real_test_images,
    register_champion,
    save_png,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
JSON = "application/json"


@dataclass
class Served:
    url: str
    port: int
    pid: int
    champion: Champion
    env: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A champion trained on synthetic data (rule threshold 0), served on a free port."""
    base = tmp_path_factory.mktemp("serving")
    with serving(register_champion(base), base / "serve.log") as server:
        yield server


def start_server(champion: Champion, log: Path, *options: str) -> tuple[Served, subprocess.Popen]:
    """`fmnist serve` on a free port of 127.0.0.1, in its own process group, answering."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion.tracking_uri}
    port = stack.free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "fmnist"), "serve", "--port", str(port),
             "--params", str(champion.params_file), *options],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not stack.healthy(f"{url}/ping"):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError(f"the scoring server did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return Served(url, port, server.pid, champion, env, log), server


def stop_server(server: subprocess.Popen, signum: int = signal.SIGTERM) -> int:
    """Signal the server's process group; its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signum)
    return server.wait(timeout=30)


@contextlib.contextmanager
def serving(champion: Champion, log: Path, *options: str) -> Iterator[Served]:
    served, server = start_server(champion, log, *options)
    try:
        yield served
    finally:
        stop_server(server)


def _send(
    url: str, body: bytes, content_type: str | None = JSON, path: str = "/invocations",
    method: str = "POST",
) -> tuple[int, http.client.HTTPMessage, dict[str, Any]]:  # fmt: skip
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(f"{url}{path}", data=body or None, headers=headers,
                                     method=method)  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"{}")


def _post(url: str, body: object) -> tuple[int, dict]:
    """POST a JSON body to /invocations: (status, the answer's JSON)."""
    status, _, answer = _send(url, json.dumps(body).encode())
    return status, answer


def _csv(pixels: np.ndarray) -> bytes:
    return "\n".join(",".join(map(str, row)) for row in pixels.reshape(len(pixels), 784)).encode()


def test_every_request_form_gets_the_models_predictions(served: Served) -> None:
    import keras

    pixels = served.champion.pixels[:20]  # (20, 28, 28) uint8
    offline = keras.models.load_model(served.champion.keras_file).predict(
        pixels.reshape(20, 784).astype(np.float32) / 255, verbose=0
    )
    rows = pixels.reshape(20, 784).tolist()
    bodies = [
        (json.dumps({"inputs": rows}).encode(), JSON),
        (json.dumps({"inputs": pixels.tolist()}).encode(), JSON),
        (json.dumps({"instances": pixels.tolist()}).encode(), JSON),
        (
            json.dumps({"dataframe_split": {"columns": list(range(784)), "data": rows}}).encode(),
            JSON,
        ),
        (_csv(pixels), "text/csv"),
    ]
    for body, content_type in bodies:
        status, headers, answer = _send(served.url, body, content_type)
        assert status == 200, answer
        assert headers["X-Model-Version"] == "1" and answer["model_version"] == 1
        predictions = answer["predictions"]
        assert [p["class_id"] for p in predictions] == offline.argmax(axis=1).tolist()
        assert np.allclose([p["Ankle boot"] for p in predictions], offline[:, 9], atol=1e-5)


REFUSALS = {  # name: (body, content type, status, what the line says)
    "783 values": (json.dumps({"inputs": [[137] * 783]}), JSON, 400, "784 pixels"),
    "text": (json.dumps({"inputs": [["white"] * 784]}), JSON, 400, "got text values"),
    "booleans": (json.dumps({"inputs": [[True] * 784]}), JSON, 400, "got boolean values"),
    "a boolean among numbers": (
        json.dumps({"inputs": [[139] * 783 + [True]]}), JSON, 400, "got boolean values"
    ),
    "over 255": (json.dumps({"inputs": [[300] * 784]}), JSON, 400, "0-255"),
    "negative": (json.dumps({"inputs": [[-1] * 784]}), JSON, 400, "0-255"),
    "malformed JSON": (json.dumps({"inputs": [[141] * 784]})[:-40], JSON, 400, "malformed JSON"),
    "CSV text": (",".join(["147"] * 784) + "\n" + ",".join(["147"] * 783 + ["white"]),
                 "text/csv", 400, "CSV line 2, value 784: not a number"),
    "form data": (json.dumps({"inputs": [[143] * 784]}), "application/x-www-form-urlencoded",
                  415, "Content-Type must be application/json"),
    "no content type": (json.dumps({"inputs": [[145] * 784]}), None, 415, "text/csv"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSALS))
def test_each_refusal_is_its_status_and_one_short_line(served: Served, name: str) -> None:
    body, content_type, expected_status, says = REFUSALS[name]
    status, headers, answer = _send(served.url, body.encode(), content_type)
    assert status == expected_status, answer
    assert set(answer) == {"error_code", "message"}
    message = answer["message"]
    assert says in message
    assert len(message) < 200 and "\n" not in message and "Traceback" not in message
    middle = len(body) // 2
    assert body[middle - 20 : middle + 20] not in message  # never the request echoed back
    assert headers["X-Model-Version"] == "1"


def test_unknown_paths_and_methods_are_json_lines(served: Served) -> None:
    status, _, answer = _send(served.url, b"", None, path="/predict", method="GET")
    assert status == 404 and "no such endpoint" in answer["message"]
    status, _, answer = _send(served.url, b"", None, method="GET")
    assert status == 405 and answer["message"] == "method not allowed here (allowed: POST)"
    status, _, answer = _send(served.url, b"", None, path="/version", method="GET")
    assert status == 200 and answer["model_version"] == 1


class _PeakRss:
    """The server's resident memory, sampled every 10 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 1e6


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_60_mb_body_gets_413_quickly_and_is_never_held(served: Served, chunked: bool) -> None:
    body = b'{"inputs": [' + b"0, " * 20_000_000 + b"0]}"  # 60 MB of valid JSON
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    headers = {"Content-Type": JSON}
    start = time.monotonic()
    with _PeakRss(served.pid) as rss:
        if chunked:  # no Content-Length: the server counts what arrives
            pieces = (body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20))
            connection.request("POST", "/invocations", pieces, headers, encode_chunked=True)
        else:
            connection.request("POST", "/invocations", body, headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
    elapsed = time.monotonic() - start
    connection.close()
    assert response.status == 413, answer
    assert answer == {
        "error_code": "REQUEST_TOO_LARGE",
        "message": "request body over 50 MB (the server's --max-request-mb); send fewer images",
    }
    assert elapsed < 15, elapsed  # generous: it takes well under a second here
    assert rss.growth_mb < 300, rss.growth_mb
    status, _ = _post(served.url, {"inputs": [[0] * 784]})  # and it still serves
    assert status == 200


def _predict(served: Served, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fmnist"), "predict", "--params", str(served.champion.params_file),
         *map(str, paths)],
        env=served.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_predict_classifies_png_files(served: Served, tmp_path: Path) -> None:
    raw = served.champion.pixels[:2]
    Image.fromarray(raw[0]).save(tmp_path / "a.png")
    Image.fromarray(raw[1]).resize((56, 56)).save(tmp_path / "big.png")
    result = _predict(served, tmp_path / "a.png", tmp_path / "big.png")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header == "classified by fashion-mnist v1 (@challenger @champion):"
    assert lines[0].startswith(f"{tmp_path / 'a.png'}: ")
    assert "resized from 56x56" in lines[1]


def test_predict_gives_every_png_form_the_served_predictions(
    served: Served, tmp_path: Path
) -> None:
    images = real_test_images(200)
    paths = [save_png(px, form, tmp_path / f"{form.replace(';', '')}-{i}.png")
             for form in PNG_FORMS for i, px in enumerate(images)]  # fmt: skip
    result = _predict(served, *paths)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [line.split(": ", 1)[1] for line in result.stdout.splitlines()[1:]]  # label (p=.)
    by_form = np.array(answers).reshape(len(PNG_FORMS), 200)
    assert (by_form == by_form[0]).all(), "a PNG form changed a prediction"
    status, _, served_answer = _send(served.url, json.dumps({"inputs": images.tolist()}).encode())
    assert status == 200
    labels = [answer.split(" (p=")[0] for answer in by_form[0]]
    assert labels == [p["label"] for p in served_answer["predictions"]]


@pytest.mark.parametrize("name", ["not.png", "huge.png"])
def test_predict_refuses_a_bad_file_in_one_line(served: Served, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name == "huge.png":
        path.write_bytes(raw_png(5000, 5000, 8, 0, bytes(5000 * 5000)))
    else:
        path.write_text("hello")
    result = _predict(served, path)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert ("not an image" if name == "not.png" else "5000x5000 is too large") in result.stderr
