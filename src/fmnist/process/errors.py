"""Errors users can cause, each with its exit code; mlflow_store.failure_line makes one line."""


class FmnistError(Exception):
    """Base class: a user-facing problem, reported as one line, never as a traceback."""

    exit_code = 1


class ConfigError(FmnistError):
    """params.yaml (or a flow parameter) holds an unknown key, a wrong type or a bad value."""

    exit_code = 2


class DataIntegrityError(FmnistError):
    """A data file is missing, truncated, corrupt or does not match what it should hold."""

    exit_code = 3


class DownloadError(FmnistError):
    """No mirror could serve a verified copy of a dataset file."""

    exit_code = 4


class TrackingError(FmnistError):
    """MLflow tracking or the model registry refused an operation."""

    exit_code = 5


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library messages can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class StageError(FmnistError):
    """A DVC stage (or DVC itself) failed; the message is the stage's own error line."""

    exit_code = 6


class TrainingError(FmnistError):
    """Training produced no usable model: a NaN or infinite loss, or chance-level accuracy."""

    exit_code = 8


class SearchError(FmnistError):
    """The search's study database refused or could not be reached, or no trial completed."""

    exit_code = 10
