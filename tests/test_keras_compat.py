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


def test_tensorflows_start_up_lines_are_shown_only_with_verbose() -> None:
    """TensorFlow's C++ "oneDNN custom operations are on" banner (written to descriptor 2,
    whatever TF_CPP_MIN_LOG_LEVEL says) does not reach a stage's stderr unless --verbose."""
    code = (
        "from fmnist import console\n"
        "console.quiet_libraries(verbose={})\n"
        "from fmnist.keras_compat import load_keras\n"
        "keras = load_keras()\n"
        "keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).predict(\n"
        "    __import__('numpy').zeros((1, 4)), verbose=0)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    quiet, verbose = (
        subprocess.run(
            [sys.executable, "-c", code.format(flag)], env=env,
            capture_output=True, text=True, timeout=300, check=True,
        ).stderr
        for flag in (False, True)
    )  # fmt: skip
    if "oneDNN custom operations are on" not in verbose:  # TF 2.21 on x86-64 prints it
        pytest.skip("this TensorFlow build prints no oneDNN start-up line")
    assert "oneDNN" not in quiet and "absl::InitializeLog" not in quiet, quiet
