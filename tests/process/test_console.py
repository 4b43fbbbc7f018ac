"""fmnist.process.console: one line per epoch off a terminal, Keras' bar on one; quiet libraries."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fmnist.process import console
from fmnist.process.console import (
    QUIET_ENV,
    QUIET_LOGGERS,
    QUIET_WARNINGS,
    epoch_line,
    fit_settings,
    on_terminal,
    quiet_libraries,
)

EPOCH_LINE = re.compile(r"^epoch \d+/\d+: (\w+=\d+\.\d{4} )+\(\d+\.\d s\)$")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class ClosedStream(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


def test_epoch_line_reads_like_keras_history() -> None:
    # Keras hands the metrics over in its own order; the line puts loss first, val_ after.
    logs = {"accuracy": 0.80654, "loss": 0.55231, "val_accuracy": 0.84409, "val_loss": 0.44312}
    assert epoch_line(1, 5, logs, 3.14) == (
        "epoch 1/5: loss=0.5523 accuracy=0.8065 val_loss=0.4431 val_accuracy=0.8441 (3.1 s)"
    )


def test_epoch_line_without_metrics_and_with_numpy_scalars() -> None:
    import numpy as np

    assert epoch_line(2, 2, {}, 0.04) == "epoch 2/2: (0.0 s)"
    assert epoch_line(3, 9, {"loss": np.float32(0.25)}, 12.0) == "epoch 3/9: loss=0.2500 (12.0 s)"


def test_on_terminal() -> None:
    assert on_terminal(FakeTerminal())
    assert not on_terminal(io.StringIO())
    assert not on_terminal(ClosedStream())


def test_terminal_gets_keras_bar_and_no_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    # The terminal branch needs no Keras at all (and this test must not import it).
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    assert fit_settings() == (console.KERAS_BAR, [])
    assert console.KERAS_BAR == 1


def test_module_imports_no_heavy_library() -> None:
    code = (
        "import sys, fmnist.process.console; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'mlflow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- quiet_libraries


@pytest.fixture
def restored_loggers() -> Iterator[None]:
    """The quieted loggers' levels and filters, and the environment, as they were."""
    names = {*QUIET_LOGGERS, *QUIET_WARNINGS}
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    env = {var: os.environ.get(var) for var in QUIET_ENV}
    for var in QUIET_ENV:
        os.environ.pop(var, None)
    yield
    for n, (level, filters) in saved.items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        for f in list(logger.filters):
            logger.removeFilter(f)
        for f in filters:
            logger.addFilter(f)
    for var, value in env.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


class Collect(logging.Handler):
    """Records that reach a logger's handlers (MLflow's loggers do not propagate to root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def emitted(name: str, level: int, message: str) -> list[str]:
    logger = logging.getLogger(name)
    handler = Collect()
    logger.addHandler(handler)
    try:
        logger.log(level, message)
    finally:
        logger.removeHandler(handler)
    return handler.messages


def test_quiet_raises_the_named_loggers_and_sets_mlflow_switches(restored_loggers: None) -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger("mlflow.utils.uv_utils").setLevel(logging.CRITICAL)  # the user's choice
    quiet_libraries(verbose=False)
    assert logging.getLogger("mlflow.pyfunc").level == logging.WARNING
    assert logging.getLogger("mlflow.utils.environment").level == logging.WARNING
    assert logging.getLogger("mlflow.utils.uv_utils").level == logging.CRITICAL  # never lowered
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert emitted("mlflow.pyfunc", logging.INFO, "Validating input example") == []
    assert emitted("mlflow.utils.uv_utils", logging.INFO, "Copied uv.lock") == []


def test_quiet_drops_only_the_known_warning_and_never_an_error(restored_loggers: None) -> None:
    env = "mlflow.utils.environment"
    for f in list(logging.getLogger(env).filters):  # the fixture puts them back
        logging.getLogger(env).removeFilter(f)
    quiet_libraries(verbose=False)
    quiet_libraries(verbose=False)  # twice: one filter, not two
    assert len(logging.getLogger(env).filters) == 1
    pip = "Failed to resolve installed pip version. ``pip`` will be added to conda.yaml ..."
    assert emitted(env, logging.WARNING, pip) == []
    assert emitted(env, logging.WARNING, "uv export failed") == ["WARNING uv export failed"]
    assert emitted(env, logging.ERROR, pip) == [f"ERROR {pip}"]
    for name in QUIET_LOGGERS:
        assert emitted(name, logging.ERROR, "real trouble") == ["ERROR real trouble"]
        assert emitted(name, logging.WARNING, "a warning") == ["WARNING a warning"]


def test_verbose_changes_nothing(restored_loggers: None) -> None:
    before = {n: logging.getLogger(n).level for n in QUIET_LOGGERS}
    filters = {n: list(logging.getLogger(n).filters) for n in QUIET_WARNINGS}
    quiet_libraries(verbose=True)
    assert {n: logging.getLogger(n).level for n in QUIET_LOGGERS} == before
    assert {n: list(logging.getLogger(n).filters) for n in QUIET_WARNINGS} == filters
    assert not any(var in os.environ for var in QUIET_ENV)
    pip = "Failed to resolve installed pip version."
    assert emitted("mlflow.utils.environment", logging.WARNING, pip) == [f"WARNING {pip}"]


def test_quiet_keeps_a_users_progress_bar_choice(restored_loggers: None) -> None:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "true"
    quiet_libraries(verbose=False)
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"


# ---------------------------------------------------------------- a real fit


@pytest.mark.slow
def test_fit_off_a_terminal_prints_one_plain_line_per_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    from fmnist.process.imports import load_keras

    keras = load_keras()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8), dtype=np.float32), rng.integers(0, 3, 64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        loss="sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=4
    )
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    verbose, callbacks = fit_settings()
    assert verbose == console.KERAS_SILENT
    model.fit(
        x, y, validation_split=0.25, epochs=2, batch_size=8, verbose=verbose, callbacks=callbacks
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, out.getvalue()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert all(EPOCH_LINE.match(line) for line in lines), lines
    assert lines[0].startswith("epoch 1/2: loss=") and lines[1].startswith("epoch 2/2: loss=")
    assert "val_loss=" in lines[1] and "val_accuracy=" in lines[1]


def test_library_prints_are_hidden_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    from fmnist.process.console import library_prints

    console.quiet_libraries(verbose=False)
    with library_prints():
        print("Successfully registered model 'm'.", file=sys.stderr)
        print("WARNING mlflow.store: something a user must see", file=sys.stderr)
    assert capsys.readouterr().err == "WARNING mlflow.store: something a user must see\n"
    with pytest.raises(ValueError, match="boom"), library_prints():
        print("Created version '2' of model 'm'.", file=sys.stderr)
        raise ValueError("boom")  # errors still propagate, and what was printed is shown
    assert capsys.readouterr().err == "Created version '2' of model 'm'.\n"
    console.quiet_libraries(verbose=True)
    with library_prints():
        print("Created version '1' of model 'm'.", file=sys.stderr)
    assert capsys.readouterr().err == "Created version '1' of model 'm'.\n"
