"""How stages load Keras: through one function, with Unicode model names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each test starts an interpreter that imports TensorFlow


def python(code: str) -> str:
    """Run code in a fresh interpreter (a first import of Keras); return its last stdout line."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env,
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_stages_get_keras_on_the_serving_backend_with_unicode_names() -> None:
    """The backend that serves the model (TensorFlow), and a model named in Korean builds."""
    out = python(
        "import json\n"
        "from fmnist.keras_compat import load_keras\n"
        "keras = load_keras()\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name='패션 MNIST 모델')\n"
        "print(json.dumps([keras.backend.backend(), m.name, 'jax' in __import__('sys').modules]))\n"
    )
    assert json.loads(out) == ["tensorflow", "패션 MNIST 모델", False]
