"""A registered version runs the code it shipped with, whatever this process holds.

Every version carries the `fmnist_model` package it was logged with (MLflow's `code/`), and
MLflow puts that folder first on sys.path when it loads the version. But Python imports a
package once per process: where `fmnist_model` is imported already (fmnist imports the
checkout's copy, and a server following @champion has loaded an earlier version's), the
version would silently run that copy instead: a rollback would serve old weights with
today's preprocessing. `shipped_code` makes the load import the version's own package
afresh and then gives the process its own modules back; the loaded model keeps references
to the modules it was built from, so it keeps running its own code.
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
    """Load a version inside: its `fmnist_model` is imported from its own code/, not taken
    from this process; afterwards the process's own modules and sys.path are back."""
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
