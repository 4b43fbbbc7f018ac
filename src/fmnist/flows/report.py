"""What a finished DVC experiment registered, read from its commit, for a flow's artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fmnist.pipeline import records
from fmnist.pipeline.dvc_cli import experiment_file, experiment_json
from fmnist.process import layout


@dataclass(frozen=True)
class ExperimentReport:
    markdown: str
    epochs: list[dict[str, float]]
    version: int
    run_id: str
    reuse: str | None = None  # the line saying which version it reused, if DVC did


def report_experiment(root: Path, ref: str, name: str, reused: bool = False) -> ExperimentReport:
    """Experiment NAME's registered version, metrics, history and summary, read from its
    commit (no tracking server round trip: exactly what this run produced); reused: DVC did
    not run register, and the report says so."""
    from fmnist.pipeline.report import epoch_rows, model_markdown, reuse_line

    registered = experiment_json(root, ref, layout.REGISTERED)
    trained = experiment_json(root, ref, layout.TRAINED)
    version, run_id = int(registered["version"]), registered["run_id"]
    reuse = reuse_line(version, run_id) if reused else None
    markdown = model_markdown(
        model_display_name=trained[records.MODEL_NAME_TAG],
        summary=experiment_file(root, ref, layout.SUMMARY),
        metrics=experiment_json(root, ref, layout.TEST_METRICS),
        registered=registered,
        experiment=name,
        note=reuse,
    )
    epochs = epoch_rows(experiment_file(root, ref, layout.HISTORY))
    return ExperimentReport(markdown, epochs, version, run_id, reuse)
