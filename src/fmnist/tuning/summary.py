"""The study's summary on the search's (active) MLflow run: the counts, the best trials, the
parameter importances, and Optuna's own plots of the optimisation history, the per-epoch
validation accuracy of every trial, and the importances."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.tracking import runs as tracking

PLOTS = (  # optuna.visualization.matplotlib function -> the image's name on the run
    ("plot_optimization_history", "search/optimization_history.png"),
    ("plot_intermediate_values", "search/val_accuracy_per_epoch.png"),
    ("plot_param_importances", "search/param_importances.png"),
)


def importances(study: Any) -> dict[str, float] | None:
    """Optuna's parameter importances (its default evaluator) on the complete trials; None
    while there are too few of them to tell."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "few trials in some regimes": early on
        try:
            found = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            return None
    return {k: round(float(v), 4) for k, v in found.items()}


def log_summary(study: Any, summary: Mapping[str, Any], artifact: str) -> None:
    """The summary (with the importances) as JSON, and the plots that can be drawn yet."""
    found = importances(study)
    tracking.log_dict({**summary, "param_importances": found}, artifact)
    with tempfile.TemporaryDirectory() as tmp:
        for function, name in PLOTS:
            if function == "plot_param_importances" and not found:
                continue
            path = Path(tmp) / Path(name).name
            if _plot(study, function, path):
                tracking.log_artifact(path, str(Path(name).parent))


def _plot(study: Any, function: str, path: Path) -> bool:
    """One of Optuna's matplotlib plots saved as path; False when it has nothing to draw."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as plots
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. "no intermediate values" yet
        try:
            axes = getattr(plots, function)(study)
        except (RuntimeError, ValueError):
            return False
    figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
    figure.set_size_inches(9, 5)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
