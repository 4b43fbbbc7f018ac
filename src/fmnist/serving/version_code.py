"""A registered version runs the `fmnist_model` it shipped with (MLflow's `code/`), not this
process's: Python imports a package once, so an already imported copy would silently serve
(a rollback: old weights, today's preprocessing). `shipped_code` imports the version's own
afresh, then gives the process its modules back; the model keeps references to its own.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

SHIPPED_PACKAGE = "fmnist_model"  # what every version carries in its code/
_loading = threading.Lock()  # one load at a time: sys.modules and sys.path are the process's


def _shipped_modules() -> dict[str, ModuleType]:
    prefix = f"{SHIPPED_PACKAGE}."
    return {
        name: module
        for name, module in list(sys.modules.items())
        if name == SHIPPED_PACKAGE or name.startswith(prefix)
    }


@contextlib.contextmanager
def shipped_code() -> Iterator[None]:
    """Load a version inside: its own `fmnist_model` is imported; the process's come back."""
    with _loading:
        own = _shipped_modules()
        path = list(sys.path)
        for name in own:
            del sys.modules[name]
        try:
            yield
        finally:
            for name in _shipped_modules():  # the version's: its model holds them
                del sys.modules[name]
            sys.modules.update(own)
            sys.path[:] = path  # MLflow prepended the version's code/ folder
