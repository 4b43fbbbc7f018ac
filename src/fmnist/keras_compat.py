"""Keras, loaded the way fmnist's stages need it: lean, and with Unicode model names.

Lean: Keras 3 imports scikit-learn, pandas and matplotlib at start-up, for integrations
(sklearn wrappers, DataFrame inputs, image galleries) no stage uses, and TensorFlow imports
jax for TFLite; kept out of that import they cost nothing (measured here: -0.8 s and
-82 MiB per process, and jax another 0.4 s and 40 MiB). A stage that needs one of them
imports it itself, later, as usual.

Unicode names: the fix lives with the served model (`fmnist_model.unicode_names`), which
every registered version carries; stages install it through here.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from fmnist_model.unicode_names import allow_unicode_names

OPTIONAL_AT_IMPORT = ("sklearn", "pandas", "matplotlib")  # Keras tries these, then goes on
TFLITE_OPTIONAL = "jax"  # TensorFlow's import tries jax (for TFLite); Keras' NumPy backend needs it


INFERENCE_BACKEND = "numpy"  # Keras' NumPy backend: predict/evaluate only, no TensorFlow


def infer_without_tensorflow() -> None:
    """Have this process's Keras run on its NumPy backend, unless the user chose a backend
    (KERAS_BACKEND) or Keras is already loaded. For stages that only predict: the model file
    is backend-neutral, the numbers agree with TensorFlow's to float32 rounding (checked in
    tests), and the stage skips TensorFlow's import (measured here: 4 s, 600 MiB)."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", INFERENCE_BACKEND)


def load_keras() -> ModuleType:
    """The keras module, imported lean if this is the process's first import, and able to
    run models with Unicode names; every stage gets Keras through here."""
    from fmnist.failures import interrupts_deferred

    if "keras" not in sys.modules:
        needs_jax = os.environ.get("KERAS_BACKEND") in ("jax", INFERENCE_BACKEND)
        keep_out = OPTIONAL_AT_IMPORT + (() if needs_jax else (TFLITE_OPTIONAL,))
        with interrupts_deferred(), _kept_out(keep_out):
            import keras  # noqa: F401
    with interrupts_deferred():
        allow_unicode_names()  # imports TensorFlow itself on that backend
    return sys.modules["keras"]


class _KeepOut(importlib.abc.MetaPathFinder):
    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = set(packages)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.packages:
            raise ImportError(f"{name} is kept out of Keras' import")


@contextlib.contextmanager
def _kept_out(packages: Sequence[str]) -> Iterator[None]:
    """Imports of these packages (when not loaded yet) fail inside the block."""
    finder = _KeepOut(packages)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
