"""Keras as stages need it: a long-lived import, signals deferred during it (one inside
TensorFlow's native start-up can abort the process), Unicode model names allowed (the fix
lives in fmnist_model, which every version carries)."""

from __future__ import annotations

import sys
from types import ModuleType

from fmnist.process.failures import signals_held
from fmnist.process.imports import few_malloc_arenas, long_lived
from fmnist_model.unicode_names import allow_unicode_names


def load_keras() -> ModuleType:
    """The keras module, able to run models with Unicode names."""
    if "keras" not in sys.modules:
        few_malloc_arenas()
        # Signals wait for the end: one in a native start-up callback aborts the process from
        # C++ (jaxlib's nanobind: SIGABRT, no message) or leaves the extension half made.
        with signals_held(second_stops=False), long_lived():
            import keras  # noqa: F401
    allow_unicode_names()  # once per process; a no-op after the first
    return sys.modules["keras"]
