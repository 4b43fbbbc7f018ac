"""How stages load Keras: lean, Unicode names, and inference without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fmnist.keras_compat import OPTIONAL_AT_IMPORT


def python(code: str, env: dict[str, str] | None = None) -> str:
    """Run code in a fresh interpreter (a first import of Keras); return its last stdout line.
    KERAS_BACKEND is unset there unless env sets it."""
    base = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**base, **(env or {})},
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_keras_loads_without_its_optional_integrations_which_still_import_later() -> None:
    out = python(
        "import sys, json\n"
        "from fmnist.keras_compat import load_keras\n"
        "keras = load_keras()\n"
        f"kept_out = [m for m in {(*OPTIONAL_AT_IMPORT, 'jax')!r} if m in sys.modules]\n"
        "import sklearn.metrics, pandas, matplotlib\n"
        "print(json.dumps([keras.backend.backend(), kept_out]))\n"
    )
    assert json.loads(out) == ["tensorflow", []]


def test_inference_without_tensorflow_predicts_what_tensorflow_predicts(tmp_path: Path) -> None:
    """The evaluate stage's way: the same saved model (Unicode name and all) on Keras' NumPy
    backend gives TensorFlow's probabilities to float32 rounding, and TensorFlow never loads."""
    from fmnist.config import LayerConfig, ModelConfig
    from fmnist.model import build_model
    from tests.conftest import synthetic_images

    model = build_model(ModelConfig(hidden=(LayerConfig(units=16, activation="sigmoid"),)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pixels, labels = synthetic_images(64, seed=3)
    x = pixels.reshape(64, -1).astype(np.float32) / 255
    model.fit(x, labels, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    expected = model.predict(x, verbose=0)
    out = python(
        "import sys, json, numpy as np\n"
        "from pathlib import Path\n"
        "from fmnist.keras_compat import infer_without_tensorflow\n"
        "infer_without_tensorflow()\n"
        "from fmnist.stages import load_keras_model\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "model = load_keras_model(folder / 'm.keras')\n"
        "np.save(folder / 'p.npy', model.predict(np.load(folder / 'x.npy'), verbose=0))\n"
        "import keras\n"
        "print(json.dumps([keras.backend.backend(), model.name, 'tensorflow' in sys.modules]))\n"
    )
    assert json.loads(out) == ["numpy", "패션 MNIST 모델", False]
    got = np.load(tmp_path / "p.npy")
    assert np.abs(got - expected).max() < 1e-5
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_a_chosen_backend_is_kept() -> None:
    out = python(
        "from fmnist.keras_compat import infer_without_tensorflow, load_keras\n"
        "infer_without_tensorflow()\n"
        "print(load_keras().backend.backend())\n",
        env={"KERAS_BACKEND": "tensorflow"},
    )
    assert out == "tensorflow"
