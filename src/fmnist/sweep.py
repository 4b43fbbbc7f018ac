"""The tutorial's optimizer comparison as a grid: which trainings a sweep runs, which one wins.

Pure: names and numbers in, names and numbers out. Running the trainings (DVC experiments),
tracking them (MLflow child runs) and registering the winner happen in stages.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from fmnist.config import Activation, Optimizer
from fmnist.errors import ConfigError
from fmnist.overrides import RunOverrides

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")  # the tutorial's list, in its order
ACTIVATIONS = ("sigmoid", "relu")  # its first model's hidden activation, then its last's
KNOWN_OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
KNOWN_ACTIVATIONS: tuple[str, ...] = get_args(Activation)


@dataclass(frozen=True)
class Training:
    """One cell of the grid."""

    name: str  # "adam-relu": the MLflow child run's and the DVC experiment's suffix
    optimizer: str
    activation: str


@dataclass(frozen=True)
class Outcome:
    """What one training produced, or why it failed."""

    training: Training
    experiment: str | None = None  # the DVC experiment's name
    run_id: str | None = None  # the MLflow child run
    test_accuracy: float | None = None
    test_loss: float | None = None
    fit_seconds: float | None = None
    error: str | None = None  # one line; None when it succeeded

    @property
    def ok(self) -> bool:
        return self.error is None and self.test_accuracy is not None


def _checked(kind: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    values = list(values)
    if not values:
        raise ConfigError(f"sweep {kind}: empty; give at least one of {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"sweep {kind}: {unknown[0]!r} is not one of {', '.join(allowed)}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"sweep {kind}: {repeated[0]!r} given twice")
    return values


def grid(optimizers: Sequence[str], activations: Sequence[str]) -> list[Training]:
    """Every optimizer with every hidden activation (optimizer-major, as the tutorial lists)."""
    opts = _checked("optimizers", optimizers, KNOWN_OPTIMIZERS)
    acts = _checked("activations", activations, KNOWN_ACTIVATIONS)
    return [Training(f"{o}-{a}", o, a) for o in opts for a in acts]


def training_overrides(training: Training, base: RunOverrides) -> RunOverrides:
    """The run's overrides for one cell: the sweep's common ones plus the cell's two values."""
    return dataclasses.replace(
        base, optimizer=training.optimizer, hidden_activation=training.activation
    )


def best(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The highest test accuracy among the trainings that succeeded (then the lower loss)."""
    done = [o for o in outcomes if o.ok]
    if not done:
        return None
    return max(done, key=lambda o: (o.test_accuracy, -(o.test_loss or 0.0)))


def comparison_rows(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One row per training, best first, failed ones last with their error."""
    winner = best(outcomes)
    ranked = sorted(
        outcomes, key=lambda o: (not o.ok, -(o.test_accuracy or 0.0), o.test_loss or 0.0)
    )
    return [
        {
            "training": o.training.name,
            "optimizer": o.training.optimizer,
            "activation": o.training.activation,
            "test_accuracy": _rounded(o.test_accuracy),
            "test_loss": _rounded(o.test_loss),
            "fit_seconds": _rounded(o.fit_seconds, 2),
            "status": "best" if o is winner else ("ok" if o.ok else f"failed: {o.error}"),
            "experiment": o.experiment or "",
            "run_id": o.run_id or "",
        }
        for o in ranked
    ]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
