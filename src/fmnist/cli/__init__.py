"""The `fmnist` command (Typer), thin adapters into the features. A command's module is
imported only when that command runs, so a stage executes, and DVC tracks as its
dependencies, only its own adapter; `fmnist --help` loads them all."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from fmnist.cli.app import app, run_app

# command (first word) -> its module in fmnist.cli; the order of `fmnist --help`
COMMAND_MODULES = {
    **dict.fromkeys(("download", "prepare", "train", "evaluate", "register"), "stages"),
    **dict.fromkeys(("models", "promote", "rollback", "predict", "serve", "score"), "serving"),
    **dict.fromkeys(("sweep", "search"), "sweep"),
    "stack": "stack",
}


def load_commands(argv: Sequence[str] = ()) -> None:
    """Register the module of the command argv names; every command if it names none."""
    first = next((a for a in argv if not a.startswith("-")), None)
    wanted = [COMMAND_MODULES[first]] if first in COMMAND_MODULES else COMMAND_MODULES.values()
    for module in dict.fromkeys(wanted):
        importlib.import_module(f"fmnist.cli.{module}")


def main() -> None:
    """Console-script entry point."""
    load_commands(sys.argv[1:])
    run_app()


__all__ = ["COMMAND_MODULES", "app", "load_commands", "main"]
