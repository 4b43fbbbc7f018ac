"""How stages load Keras: through one function, with Unicode model names, a Ctrl-C during the
first import held to its end."""

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
        "from fmnist.process.imports import load_keras\n"
        "keras = load_keras()\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name='패션 MNIST 모델')\n"
        "print(json.dumps([keras.backend.backend(), m.name, 'jax' in __import__('sys').modules]))\n"
    )
    assert json.loads(out) == ["tensorflow", "패션 MNIST 모델", False]


def test_a_ctrl_c_inside_the_first_import_is_raised_after_it() -> None:
    """SIGINT while TensorFlow's modules are still importing is held to the import's end
    (fmnist.process.failures.signals_held): KeyboardInterrupt then, with Keras whole; raised
    inside the import, it would leave no keras module (or abort from native code)."""
    out = python(
        "import importlib.abc, json, os, signal, sys\n"
        "class InterruptMidImport(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow.python' and not sent:\n"
        "            sent.append(name)\n"
        "            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, deep inside the import\n"
        "sent = []\n"
        "sys.meta_path.insert(0, InterruptMidImport())\n"
        "from fmnist.process.imports import load_keras\n"
        "try:\n"
        "    load_keras()\n"
        "    raised = False\n"
        "except KeyboardInterrupt:\n"
        "    raised = True\n"
        "keras = sys.modules.get('keras')\n"
        "print(json.dumps([sent, raised, keras is not None and keras.backend.backend()]))\n"
    )
    assert json.loads(out) == [["tensorflow.python"], True, "tensorflow"]
