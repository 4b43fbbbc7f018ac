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
import ctypes
import gc
import importlib
import os
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


M_ARENA_MAX = -8  # glibc's <malloc.h>: the most malloc arenas a process creates
THREADED_ARENAS = 2


def few_malloc_arenas() -> None:
    """Cap glibc's malloc arenas before TensorFlow starts its thread pools (mallopt(3)).

    glibc gives a thread that finds the arenas busy a new one, up to 8 per core, and each
    keeps its freed memory: TensorFlow's pools plus tf.data's threads leave ~20 MiB of peak
    RSS in arenas a training here does not need (the same fit, the same seconds). Left alone
    when MALLOC_ARENA_MAX is set (glibc has read it) and where malloc is not glibc's.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): no arenas to cap
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(M_ARENA_MAX, THREADED_ARENAS)
