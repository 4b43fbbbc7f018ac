"""Importing the big libraries the way a short command wants: a stage imports about a million
objects that live until it ends, which the cyclic collector would keep rescanning, during the
import and after. So it is paused during the import, and what it made frozen (gc.freeze).
Keras also gets signals deferred and Unicode model names (fixed in fmnist_model)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from fmnist.process.failures import signals_held
from fmnist_model.unicode_names import allow_unicode_names


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """No collection during the block, and nothing it made rescanned after it."""
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


def few_malloc_arenas() -> None:
    """Cap glibc's malloc arenas before TensorFlow starts its thread pools (mallopt(3)): a
    busy thread gets a new arena (up to 8 per core) that keeps its freed memory, ~20 MiB of
    peak RSS a training does not need. Left alone if MALLOC_ARENA_MAX is set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): no arenas to cap
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(-8, 2)  # M_ARENA_MAX (glibc's <malloc.h>: the most arenas a process makes): 2


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
