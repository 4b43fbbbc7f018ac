"""What a pipeline run reports (Prefect artifacts): pure text and tables from its results."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any


def model_markdown(
    *,
    model_display_name: str,
    summary: str,
    metrics: Mapping[str, float],
    registered: Mapping[str, Any],
    experiment: str,
    note: str | None = None,
) -> str:
    """Markdown: the registered version, its aliases, run, metrics and Keras summary; note first."""
    shown = ", ".join(f"@{a}" for a in registered["aliases"]) or "none"
    head = (
        (f"{note}\n\n" if note else "") + f"# {registered['name']} v{registered['version']}\n\n"
        f"- registered model: `{registered['name']}` version **{registered['version']}**"
        f" (aliases: {shown})\n"
        + (f"- promotion: {registered['promotion']}\n" if "promotion" in registered else "")
        + f"- MLflow run id: `{registered['run_id']}`\n"
        f"- DVC experiment: `{experiment}` (`dvc exp show`, `dvc exp apply {experiment}`)\n\n"
    )
    return head + describe_version(model_display_name, summary, metrics)


def reuse_line(version: int, run_id: str) -> str:
    """What a pipeline run says when DVC ran none of its stages: which version it got."""
    return (
        f"reused version {version} from run {run_id}: DVC restored the pipeline's outputs "
        "(same data, code and params); pass force=true to retrain"
    )


def epoch_rows(history_csv: str) -> list[dict[str, float]]:
    """The train stage's per-epoch CSV (epoch, loss, ...) as table rows, values rounded."""
    rows = list(csv.DictReader(io.StringIO(history_csv)))
    return [{k: int(v) if k == "epoch" else round(float(v), 6) for k, v in r.items()} for r in rows]


def describe_version(model_display_name: str, summary: str, metrics: Mapping[str, float]) -> str:
    """Markdown for a model version: the metrics table and the Keras summary."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    return (
        f"**{model_display_name}**\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"Keras summary:\n\n```\n{summary.rstrip()}\n```\n"
    )
