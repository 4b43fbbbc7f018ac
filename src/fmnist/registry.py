"""The MLflow model registry: register versions, aliases (never stages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fmnist.errors import TrackingError, first_line

CHALLENGER = "challenger"


def describe_version(model_display_name: str, summary: str, metrics: Mapping[str, float]) -> str:
    """Markdown for a model version: the metrics table and the Keras summary."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    return (
        f"**{model_display_name}**\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"Keras summary:\n\n```\n{summary.rstrip()}\n```\n"
    )


def register_version(
    uri: str,
    name: str,
    model_uri: str,
    *,
    description: str,
    tags: Mapping[str, str],
    alias: str = CHALLENGER,
) -> Any:
    """Register model_uri as a new version of `name` with description, tags and alias.

    All or nothing: if describing or aliasing fails, the new version is deleted again, so a
    failed registration leaves neither a half-made version nor a moved alias.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        version = mlflow.register_model(model_uri, name, tags=dict(tags))
    except MlflowException as exc:
        raise TrackingError(f"registering {model_uri} as {name!r}: {first_line(exc)}") from None
    try:
        client.update_model_version(name, version.version, description=description)
        client.set_registered_model_alias(name, alias, version.version)
    except BaseException as exc:
        client.delete_model_version(name, version.version)
        if isinstance(exc, MlflowException):
            raise TrackingError(
                f"registering {name} v{version.version}: {first_line(exc)}"
            ) from None
        raise
    return client.get_model_version(name, version.version)
