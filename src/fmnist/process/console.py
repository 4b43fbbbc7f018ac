"""What a stage prints: its progress (Keras' live bar on a terminal, else one flushed line per
epoch, no ANSI escapes) and result; library chatter only with --verbose (nothing at ERROR or
above is silenced; TensorFlow's C++ start-up lines are its own to silence, tensorflow#100442)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import keras

KERAS_BAR = 1  # model.fit(verbose=1): Keras' live progress bar
KERAS_SILENT = 0  # model.fit(verbose=0): nothing from Keras

# Loggers raised to WARNING unless --verbose (MLflow 3.x's INFO lines: "Validating input
# example...", "Inferring model signature...", "Detected uv project...", "Copied uv.lock...")
QUIET_LOGGERS = dict.fromkeys(
    ("mlflow.pyfunc", "mlflow.utils.environment", "mlflow.utils.uv_utils"), logging.WARNING
)
# WARNING lines dropped by the start of their message (a uv venv has no pip; the served
# model's requirements are pinned by fmnist anyway)
QUIET_WARNINGS = {"mlflow.utils.environment": ("Failed to resolve installed pip version",)}
# MLflow's documented switches, set unless the user set them: "Downloading artifacts: 100%|"
# (tqdm on stderr, when a logged model is loaded back to validate its input example)
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# What libraries print themselves (not through logging) that library_prints drops:
LIBRARY_PRINTS = (
    "Successfully registered model ",  # mlflow.register_model, a new registered model
    "Created version ",  # mlflow.register_model, every version
    "Registered model ",  # "... already exists. Creating a new version of this model..."
)


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether stream (default sys.stdout) is an interactive terminal."""
    try:
        return bool((sys.stdout if stream is None else stream).isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def epoch_line(epoch: int, epochs: int, logs: Mapping[str, Any], seconds: float) -> str:
    """`epoch 1/5: loss=0.5523 accuracy=0.8065 val_loss=0.4431 val_accuracy=0.8441 (3.1 s)`."""
    # train metrics before val_ ones, loss first in each
    order = sorted(logs, key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss"))
    metrics = [f"{k}={float(logs[k]):.4f}" for k in order]
    return " ".join([f"epoch {epoch}/{epochs}:", *metrics, f"({seconds:.1f} s)"])


def fit_settings() -> tuple[int, list[keras.callbacks.Callback]]:
    """(verbose, callbacks) for model.fit: Keras' bar on a terminal, else a line per epoch."""
    if on_terminal():
        return KERAS_BAR, []
    from fmnist.process.imports import load_keras

    load_keras()  # the lean first import, if this is it
    import keras

    class EpochLines(keras.callbacks.Callback):
        started = 0.0

        def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - self.started
            epochs = int((self.params or {}).get("epochs", epoch + 1))
            line = epoch_line(epoch + 1, epochs, logs or {}, seconds)
            print(line, flush=True)

    return KERAS_SILENT, [EpochLines()]


def _drop_quiet_warning(record: logging.LogRecord) -> bool:
    """A logging filter: drops records below ERROR that QUIET_WARNINGS names."""
    prefixes = QUIET_WARNINGS.get(record.name, ())
    return record.levelno >= logging.ERROR or not record.getMessage().startswith(prefixes)


_chatter = {"shown": True}  # quiet_libraries(verbose=False) hides it


def chatter_shown() -> bool:
    """Whether this command shows library chatter (--verbose, or quiet_libraries not called)."""
    return _chatter["shown"]


@contextlib.contextmanager
def library_prints() -> Iterator[None]:
    """Inside the block, the stderr lines LIBRARY_PRINTS names are shown only with --verbose;
    the others are passed on when it ends (all of them if it raised)."""
    if _chatter["shown"]:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
    lines = buffer.getvalue().splitlines(keepends=True)
    sys.stderr.write("".join(x for x in lines if not x.startswith(LIBRARY_PRINTS)))


def quiet_libraries(verbose: bool) -> None:
    """Unless verbose, silence what QUIET_LOGGERS, QUIET_WARNINGS and QUIET_ENV name (levels
    only raised), before the work; MLflow need not be imported (it configures only `mlflow`)."""
    _chatter["shown"] = verbose
    if verbose:
        return
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, level))
    for name in QUIET_WARNINGS:
        if _drop_quiet_warning not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_drop_quiet_warning)
    for var, value in QUIET_ENV.items():
        os.environ.setdefault(var, value)
