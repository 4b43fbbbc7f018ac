"""Keras, loaded the way fmnist's stages need it: imported as a long-lived library
(imports), Ctrl-C and SIGTERM during its import deferred to the import's end (a signal
inside TensorFlow's native start-up can abort the process), and able to run models with
Unicode names.

Unicode names: the fix lives with the served model (`fmnist_model.unicode_names`), which
every registered version carries; stages install it through here.
"""

from __future__ import annotations

import sys
from types import ModuleType

from fmnist.process.failures import interrupts_deferred
from fmnist.process.imports import few_malloc_arenas, long_lived
from fmnist_model.unicode_names import allow_unicode_names


def load_keras() -> ModuleType:
    """The keras module, able to run models with Unicode names; every stage gets Keras
    through here."""
    if "keras" not in sys.modules:
        few_malloc_arenas()
        with interrupts_deferred(), long_lived():
            import keras  # noqa: F401
    allow_unicode_names()  # once per process; a no-op after the first
    return sys.modules["keras"]
