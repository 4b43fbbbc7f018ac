"""A registered version runs the code it shipped with: `fmnist serve`, `predict` and `score`
from a checkout whose `fmnist_model` was edited after registering answer as the version's own
code does, and a server following @champion runs each version's own code, whichever loaded
first."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.integration.test_serving import serving
from tests.scoring_helpers import MODEL_NAME, Champion, register_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
SCALING = "images.astype(np.float32) / np.float32(255.0)"
# a preprocessing change no version was trained on
EDITED_SCALING = "images.astype(np.float32) / np.float32(128.0)"


@dataclass(frozen=True)
class Setup:
    champion: Champion
    edited_src: Path  # the checkout's code with fmnist_model's scaling changed
    env: dict[str, str]  # the commands run the edited code, against the champion's store


def edited_copy(dest: Path) -> Path:
    """The checkout's src/ with fmnist_model dividing by 128 instead of 255."""
    shutil.copytree(REPO / "src", dest, ignore=shutil.ignore_patterns("__pycache__"))
    images = dest / "fmnist_model" / "images.py"
    text = images.read_text()
    assert SCALING in text, "the scaling line moved: update this test"
    images.write_text(text.replace(SCALING, EDITED_SCALING))
    return dest


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    base = tmp_path_factory.mktemp("version-code")
    champion = register_champion(base)  # v1, with the checkout's code as it is
    edited = edited_copy(base / "edited" / "src")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion.tracking_uri,
        "PYTHONPATH": str(edited),  # ahead of the installed checkout: fmnist's code is edited
    }
    return Setup(champion, edited, env)


def own_probabilities(keras_file: Path, pixels: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """(n, 10): the Keras file on pixels scaled as a version's code scales them."""
    from fmnist_model.unicode_names import load_keras_model

    model = load_keras_model(str(keras_file))
    x = (pixels.astype(np.float32) / np.float32(scale)).reshape(len(pixels), 784)
    return np.asarray(model.predict(x, verbose=0))


def test_the_commands_run_the_edited_checkout(setup: Setup) -> None:
    """The checks below can fail: the commands' fmnist_model is the edited copy ..."""
    found = subprocess.run(
        [sys.executable, "-c", "import fmnist_model.images as m; print(m.__file__)"],
        env=setup.env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(found).is_relative_to(setup.edited_src)


def test_the_edit_would_change_the_answers(setup: Setup) -> None:
    """... and the edited scaling gives other probabilities."""
    pixels = setup.champion.pixels[:20]
    own = own_probabilities(setup.champion.keras_file, pixels)
    edited = own_probabilities(setup.champion.keras_file, pixels, scale=128.0)
    assert np.abs(own - edited).max() > 0.01


def test_serve_answers_with_the_versions_own_code(setup: Setup, tmp_path: Path) -> None:
    pixels = setup.champion.pixels[:20]
    own = own_probabilities(setup.champion.keras_file, pixels)
    champion = Champion(setup.champion.tracking_uri, setup.champion.params_file,
                        setup.champion.keras_file, pixels)  # fmt: skip
    with serving_edited(champion, setup.env, tmp_path / "serve.log") as url:
        answer = post(url, pixels)
    assert answer["model_version"] == 1
    served = np.array([[p[name] for name in CLASS_ORDER] for p in answer["predictions"]])
    np.testing.assert_allclose(served, own, atol=1e-5)


def test_predict_answers_with_the_versions_own_code_and_names_it(
    setup: Setup, tmp_path: Path
) -> None:
    pixels = setup.champion.pixels[:10]
    own = own_probabilities(setup.champion.keras_file, pixels)
    paths = []
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    result = run_fmnist(setup, "predict", "--version", "1", *paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"classified by {MODEL_NAME} v1 (@challenger @champion):"
    shown = [float(line.rsplit("(p=", 1)[1].rstrip(")")) for line in lines[1:]]
    np.testing.assert_allclose(shown, own.max(axis=1), atol=0.0015)  # printed with 3 decimals


def test_score_answers_with_the_versions_own_code(setup: Setup, tmp_path: Path) -> None:
    pixels = setup.champion.pixels[:50]
    own = own_probabilities(setup.champion.keras_file, pixels)
    np.savez(tmp_path / "batch.npz", x=pixels)
    out = tmp_path / "scored.csv"
    result = run_fmnist(setup, "score", str(tmp_path / "batch.npz"), "--out", str(out),
                        "--no-monitor", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "with v1" in result.stdout
    with out.open() as f:
        rows = list(csv.DictReader(f))
    scored = np.array([[float(row[name]) for name in CLASS_ORDER] for row in rows])
    np.testing.assert_allclose(scored, own, atol=2e-6)  # written with 6 decimals


def test_a_server_following_champion_runs_each_versions_own_code(
    setup: Setup, tmp_path: Path
) -> None:
    """v2 is trained and shipped with the edited scaling; the server (checkout's code) loads
    v1 first, then v2 when @champion moves, then v1 again on a rollback: each answers as its
    own code does."""
    keras_v2 = register_with_edited_code(setup, tmp_path / "v2")
    pixels = setup.champion.pixels[:20]
    own_v1 = own_probabilities(setup.champion.keras_file, pixels)
    own_v2 = own_probabilities(keras_v2, pixels, scale=128.0)
    plain_env = {k: v for k, v in setup.env.items() if k != "PYTHONPATH"}
    champion = Champion(setup.champion.tracking_uri, setup.champion.params_file,
                        setup.champion.keras_file, pixels)  # fmt: skip
    back = run_fmnist(setup, "promote", "--version", "1", "--force", env=plain_env)
    assert back.returncode == 0, back.stderr  # v2 may have won @champion when registered
    Image.fromarray(pixels[0]).save(tmp_path / "0.png")
    asked = run_fmnist(setup, "predict", "--version", "2", str(tmp_path / "0.png"), env=plain_env)
    assert asked.returncode == 0, asked.stderr
    header, line = asked.stdout.splitlines()
    assert header.startswith(f"classified by {MODEL_NAME} v2")  # not the champion, v1
    assert abs(float(line.rsplit("(p=", 1)[1].rstrip(")")) - own_v2[0].max()) < 0.0015
    with serving(champion, tmp_path / "serve.log", "--poll-seconds", "0.5") as served:
        np.testing.assert_allclose(table(post(served.url, pixels)), own_v1, atol=1e-5)
        promote = run_fmnist(setup, "promote", "--version", "2", "--force", env=plain_env)
        assert promote.returncode == 0, promote.stderr
        answer = wait_for_version(served.url, pixels, 2)
        np.testing.assert_allclose(table(answer), own_v2, atol=1e-5)
        rollback = run_fmnist(setup, "rollback", env=plain_env)
        assert rollback.returncode == 0, rollback.stderr
        answer = wait_for_version(served.url, pixels, 1)
        np.testing.assert_allclose(table(answer), own_v1, atol=1e-5)


# ---------------------------------------------------------------- helpers

CLASS_ORDER = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

REGISTER_V2 = """
import sys
from pathlib import Path
from fmnist.params.config import parse_params
from fmnist.training import evaluate
from fmnist.data import prepare
from fmnist.registry import register
from fmnist.training import train
from tests.conftest import synthetic_images, write_raw

base, uri = Path(sys.argv[1]), sys.argv[2]
params = parse_params({
    "train": {"epochs": 2, "batch_size": 16, "steps_per_execution": 4, "seed": 8},
    "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
    "register": {"min_accuracy": 0.0},
})
arrays = {"train": synthetic_images(300, seed=1), "test": synthetic_images(100, seed=2)}
prepare.run(params, write_raw(base / "raw", arrays), base / "prepared")
out = base / "models"
t = train.TrainOutputs(out / "model.keras", out / "summary.txt", out / "trained.json",
                       out / "history.csv", out / "train.json")
train.run(params, base / "prepared", t, uri, out)
e = evaluate.EvaluateOutputs(out / "evaluate.json", out / "classes.json",
                             out / "confusion.csv", out / "confusion.png")
evaluate.run(params, t.model, base / "prepared", t.trained, e, uri)
record = register.run(params, t.trained, e.metrics, t.summary, out / "registered.json", uri)
assert record["version"] == 2, record
"""


def register_with_edited_code(setup: Setup, base: Path) -> Path:
    """v2: trained, evaluated and registered by the edited code (it ships that code)."""
    base.mkdir()
    env = {**setup.env, "PYTHONPATH": f"{setup.edited_src}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-c", REGISTER_V2, str(base), setup.champion.tracking_uri],
        env=env, cwd=base, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "models" / "model.keras"


def run_fmnist(
    setup: Setup, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fmnist"), *args, "--params", str(setup.champion.params_file)],
        env=env or setup.env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def post(url: str, pixels: np.ndarray) -> dict:
    body = json.dumps({"inputs": pixels.tolist()}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return json.loads(response.read())


def table(answer: dict) -> np.ndarray:
    return np.array([[p[name] for name in CLASS_ORDER] for p in answer["predictions"]])


def wait_for_version(url: str, pixels: np.ndarray, version: int) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = post(url, pixels)
        if answer["model_version"] == version:
            return answer
        time.sleep(0.3)
    raise AssertionError(f"the server did not switch to v{version}")


@contextlib.contextmanager
def serving_edited(champion: Champion, env: dict[str, str], log: Path) -> Iterator[str]:
    """`fmnist serve` run by the edited code (PYTHONPATH), no champion following."""
    with pytest.MonkeyPatch.context() as patch:  # start_server passes os.environ on
        for key, value in env.items():
            patch.setenv(key, value)
        with serving(champion, log, "--poll-seconds", "0") as served:
            yield served.url
