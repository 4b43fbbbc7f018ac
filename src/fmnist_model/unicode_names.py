"""Keras models with Unicode names (the tutorial's `패션 MNIST 모델`) on TensorFlow, which refuses
them as name scopes and optimizer variables' names: `allow_unicode_names` patches those two seams
of its TensorFlow backend (no public hook) to give TensorFlow a stable ASCII spelling, Keras'
own names staying as given; and the .keras file loaded for inference with the fix in place."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_VALID_SCOPE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9_.\\/>-]")


def tf_scope_name(name: str) -> str:
    """A TensorFlow-valid scope name for `name`: itself when valid, else an ASCII spelling."""
    if not name or _VALID_SCOPE.match(name):
        return name
    ascii_part = _INVALID_CHAR.sub("_", name).strip("_") or "scope"
    if not _VALID_SCOPE.match(ascii_part):
        ascii_part = f"x{ascii_part}"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{ascii_part}_{digest}"


def load_keras_model(path: str) -> Any:
    """The .keras file, ready to predict on any Keras backend (Unicode model names too)."""
    import keras

    allow_unicode_names()
    return keras.models.load_model(path, compile=False)


def allow_unicode_names() -> None:
    """Install the fix into Keras' TensorFlow backend (idempotent; no-op on other backends)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import core  # private: Keras has no public hook

    if getattr(core.name_scope.__init__, "__module__", "") == __name__:
        return  # put in already, by this module or another version's copy of it
    original_init = core.name_scope.__init__

    def __init__(self: Any, name: str, **kwargs: Any) -> None:
        original_init(self, name, **kwargs)
        self._tf_name_scope = tf.name_scope(tf_scope_name(name))

    # The one private API fmnist uses (ruff SLF001 is on everywhere else): see the docstring.
    original_initialize = core.Variable._initialize  # noqa: SLF001

    def _initialize(self: Any, value: Any) -> None:
        keras_name = self._name
        self._name = tf_scope_name(keras_name)
        try:
            original_initialize(self, value)
        finally:
            self._name = keras_name

    core.name_scope.__init__ = __init__
    core.Variable._initialize = _initialize  # noqa: SLF001 (the same fix)
