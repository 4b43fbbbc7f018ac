"""The Typer app, its shared options, the one-line error contract and the entry point."""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fmnist.process import layout

F = TypeVar("F", bound=Callable[..., Any])

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file.")]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking URI (default: sqlite:///mlflow.db in this folder).",
        show_default=False,
    ),
]
PARAMS = layout.PARAMS


def user_errors(command: F) -> F:
    """Users' mistakes and the world's faults end as one line on stderr and a specific exit code
    (mlflow_store.failure_line), not a traceback; Ctrl-C and SIGTERM as `interrupted`, 130/143."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from fmnist.process.failures import interrupted_line, signals_unwind
        from fmnist.tracking.mlflow_store import failure_line

        name = command.__name__.replace("_", " ")  # stack_up -> `stack up`, as typed
        try:
            with signals_unwind():  # a terminated stage unwinds like Ctrl-C: runs end KILLED
                result = command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            line, code = interrupted_line(exc)
        except Exception as exc:
            mlflow = sys.modules.get("mlflow")  # the store this command used, to name it
            uri = mlflow.get_tracking_uri() if mlflow else os.environ.get("MLFLOW_TRACKING_URI")
            failure = failure_line(exc, uri)
            if failure is None:
                raise  # a bug: the traceback is for us
            line, code = f"error: {failure[0]}", failure[1]
        else:
            said(0)
            return result
        said(code)
        typer.echo(f"fmnist {name}: {line}", err=True)
        raise typer.Exit(code)

    return wrapper  # type: ignore[return-value]


class Commands(typer.Typer):
    """A Typer whose every command ends users' failures as one line (user_errors)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)
        return lambda command: register(user_errors(command))


app = Commands(
    help="Fashion-MNIST with Keras: DVC stages, MLflow tracking and registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the libraries' own log lines too."),
    ] = False,
) -> None:
    from fmnist.process.console import quiet_libraries

    quiet_libraries(verbose)


def load_params(path: Path) -> Any:
    from fmnist.params.config import load_params as load

    return load(path)


def tracking_uri(given: str | None) -> str:
    from fmnist.tracking.mlflow_store import resolve_tracking_uri

    return resolve_tracking_uri(given, Path.cwd())


_process = {"standalone": False}  # run_app runs this process: its exit is the command's


def said(code: int) -> None:
    """The command has said its outcome: in the `fmnist` process a signal now exits with
    code at once (exit_on_signal); inside another (tests, a flow) the handlers are not ours."""
    from fmnist.process.failures import exit_on_signal

    if _process["standalone"]:
        exit_on_signal(code)


def run_app() -> None:
    """Run the command line (its commands registered), then exit with its code."""
    # TensorFlow's C++ INFO and WARNING logs off (its two start-up lines, absl's pre-init
    # WARNING and "oneDNN custom operations are on", ignore it: tensorflow#100442)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLflow's sqlite store logs every database error with its traceback before raising it;
    # fmnist reports the same failure in one line (fmnist.tracking.mlflow_store.failure_line).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    from fmnist.tracking.mlflow_store import bound_http_waits

    _process["standalone"] = True
    # The last exit hooks (first registered): finalization resets Python-level handlers to the
    # default, so a SIGTERM while the interpreter unloads would kill it (-15 after a success).
    for signum in (signal.SIGINT, signal.SIGTERM):
        atexit.register(signal.signal, signum, signal.SIG_IGN)
    try:
        bound_http_waits()  # a tracking server that dies mid-command costs ~1 min, not 4+
        app(prog_name="fmnist")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0

    # The command is over: a signal now exits at once with its code, instead of tearing the
    # exit apart (a library exit hook's traceback) or being ignored while a stuck hook holds it.
    said(code if isinstance(code, int) else 0 if code is None else 1)
    if code is not None and not isinstance(code, int):  # SystemExit("why"): say why, as Python does
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # 130, 143
        # Interrupted, perhaps inside a library's start-up: its exit hooks and threads may be
        # half made (seen: SIGABRT). The run ended KILLED, temp files went: nothing is left.
        os._exit(code)
    # A normal exit, minus the collector's passes over the million objects TensorFlow, Keras
    # and MLflow leave: frozen, they are not rescanned at unload (2.2 s -> 0.15 s here).
    gc.freeze()
    sys.exit(code or 0)
