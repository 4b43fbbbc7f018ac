"""Importing the big libraries (TensorFlow and Keras, MLflow) the way a short command wants.

A stage imports about a million long-lived objects (modules, functions, classes) and then
works for seconds. While they import, Python's cyclic collector keeps rescanning the growing
heap; afterwards it keeps rescanning objects that live until the process ends. Both are
avoided with the collector's public API: paused during the import (gc.disable), and what the
import made moved to the permanent generation (gc.freeze), which later collections skip.
New objects are collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """The block imports objects that live as long as the process: no collection during it,
    and none of them rescanned after it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def load_mlflow() -> ModuleType:
    """The mlflow module; its first import in the process is a long-lived one."""
    if "mlflow" not in sys.modules:
        with long_lived():
            importlib.import_module("mlflow")
    return sys.modules["mlflow"]
