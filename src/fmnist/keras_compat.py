"""Keras, loaded the way fmnist's stages need it: lean, and with Unicode model names.

Lean: Keras 3 imports scikit-learn, pandas and matplotlib at start-up, for integrations
(sklearn wrappers, DataFrame inputs, image galleries) no stage uses, and TensorFlow imports
jax for TFLite; kept out of that import they cost nothing (measured here: -0.8 s and
-82 MiB per process, and jax another 0.4 s and 40 MiB). A stage that needs one of them
imports it itself, later, as usual.

Unicode names: Keras 3 on TensorFlow cannot run models whose names TensorFlow's graph
naming rejects.

Keras keeps a layer's or model's name for itself (summary, saving, `model.name`) and also
hands it to TensorFlow twice: as a name scope in `fit` and `predict`, and inside the names
of optimizer variables (`<model>_<layer>_kernel_velocity`). TensorFlow allows only
`[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*` there, so the tutorial's `패션 MNIST 모델` fails with
"not a valid root scope name". The fix is at those two seams of Keras' TensorFlow backend:
TensorFlow gets an ASCII spelling of the name (stable, collision-resistant), while Keras'
own names, and so everything a user sees or saves, stay exactly as given.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import os
import re
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

_VALID_SCOPE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_.\\/>-]")
_installed = False
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
    if "keras" not in sys.modules:
        needs_jax = os.environ.get("KERAS_BACKEND") in ("jax", INFERENCE_BACKEND)
        with _kept_out(OPTIONAL_AT_IMPORT + (() if needs_jax else (TFLITE_OPTIONAL,))):
            import keras  # noqa: F401
    allow_unicode_names()
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


def tf_scope_name(name: str) -> str:
    """A TensorFlow-valid scope name for `name`: itself when valid, else an ASCII spelling."""
    if not name or _VALID_SCOPE.match(name):
        return name
    ascii_part = _INVALID_CHAR.sub("_", name).strip("_") or "scope"
    if not _VALID_SCOPE.match(ascii_part):
        ascii_part = f"x{ascii_part}"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{ascii_part}_{digest}"


def allow_unicode_names() -> None:
    """Install the fix into Keras' TensorFlow backend (idempotent; no-op on other backends)."""
    global _installed
    if _installed:
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        _installed = True
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import core

    original_init = core.name_scope.__init__

    def __init__(self: Any, name: str, **kwargs: Any) -> None:
        original_init(self, name, **kwargs)
        self._tf_name_scope = tf.name_scope(tf_scope_name(name))

    original_initialize = core.Variable._initialize

    def _initialize(self: Any, value: Any) -> None:
        keras_name = self._name
        self._name = tf_scope_name(keras_name)
        try:
            original_initialize(self, value)
        finally:
            self._name = keras_name

    core.name_scope.__init__ = __init__
    core.Variable._initialize = _initialize
    _installed = True
