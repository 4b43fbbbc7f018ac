"""The .keras file loaded for inference one way: serving and the evaluate stage both call it."""

from __future__ import annotations

from typing import Any

from .unicode_names import allow_unicode_names


def load_keras_model(path: str) -> Any:
    """The .keras file, ready to predict on any Keras backend (Unicode model names too)."""
    import keras

    allow_unicode_names()
    return keras.models.load_model(path, compile=False)
