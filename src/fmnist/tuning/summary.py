"""The study's summary on the run's (active) MLflow run: counts, the trials best first, the
parameter importances, and Optuna's own plots of them, of the optimisation history and of every
trial's per-epoch validation accuracy."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmnist.tracking import runs as tracking

PLOTS = (  # optuna.visualization.matplotlib function -> the image's name on the run
    ("plot_optimization_history", "optimization_history.png"),
    ("plot_intermediate_values", "val_accuracy_per_epoch.png"),
    ("plot_param_importances", "param_importances.png"),
)


def log_summary(study: Any, summary: Mapping[str, Any], artifact: str) -> None:
    """The summary with Optuna's parameter importances (None while too few trials tell) as
    JSON, and the plots that can be drawn yet, under search/."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as plots
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # "few trials", "no intermediate values"
        try:
            found = optuna.importance.get_param_importances(study)
            importances = {k: round(float(v), 4) for k, v in found.items()}
        except (RuntimeError, ValueError):
            importances = None
        tracking.log_dict({**summary, "param_importances": importances}, artifact)
        with tempfile.TemporaryDirectory() as tmp:
            for function, name in PLOTS[: 3 if importances else 2]:
                try:
                    axes = getattr(plots, function)(study)
                except (RuntimeError, ValueError):
                    continue  # nothing to draw yet
                figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
                figure.set_size_inches(9, 5)
                figure.tight_layout()
                figure.savefig(Path(tmp) / name, dpi=100)
                plt.close(figure)
                tracking.log_artifact(Path(tmp) / name, "search")
