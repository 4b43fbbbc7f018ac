"""The tutorial's optimizer comparison as a grid: which trainings a sweep runs, which one wins.

The winner is chosen on the validation split (val_accuracy, then val_loss), never on the test
split: test accuracy is reported for every training and is what the promotion rule compares,
so choosing by it too would make the test set part of model selection.

Pure: names and numbers in, names and numbers out. Running the trainings (DVC experiments),
tracking them (MLflow child runs) and registering the winner happen in fmnist.tuning.sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from fmnist.params.config import Activation, Optimizer
from fmnist.params.overrides import RunOverrides
from fmnist.process.errors import ConfigError

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
    run_id: str | None = None  # the MLflow run that trained the model (models/trained.json)
    val_accuracy: float | None = None  # the last epoch's (metrics/train.json): selection
    val_loss: float | None = None
    test_accuracy: float | None = None  # metrics/evaluate.json: reported, and promotion's
    test_loss: float | None = None
    fit_seconds: float | None = None
    error: str | None = None  # one line; None when it succeeded
    reused_from: str | None = None  # run_id when DVC reused an earlier training (no new run)

    @property
    def ok(self) -> bool:
        return self.error is None and None not in (self.val_accuracy, self.test_accuracy)


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


def _rank(o: Outcome) -> tuple[bool, float, float]:
    """Sort key, best first: succeeded, higher val_accuracy, then lower val_loss."""
    if not o.ok:
        return (True, 0.0, 0.0)
    return (False, -(o.val_accuracy or 0.0), o.val_loss if o.val_loss is not None else 0.0)


def best(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The best by validation accuracy (ties: the lower val_loss) among the trainings that
    succeeded; test accuracy plays no part. None if every training failed."""
    done = [o for o in outcomes if o.ok]
    return min(done, key=_rank) if done else None


def comparison_rows(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One row per training, best by validation accuracy first, failed ones last with their
    error; a reused training's status says which run it reused."""
    winner = best(outcomes)
    return [
        {
            "training": o.training.name,
            "optimizer": o.training.optimizer,
            "activation": o.training.activation,
            "val_accuracy": _rounded(o.val_accuracy),
            "val_loss": _rounded(o.val_loss),
            "test_accuracy": _rounded(o.test_accuracy),
            "test_loss": _rounded(o.test_loss),
            "fit_seconds": _rounded(o.fit_seconds, 2),
            "status": _status(o, o is winner),
            "experiment": o.experiment or "",
            "run_id": o.run_id or "",
            "reused_from": o.reused_from or "",
        }
        for o in sorted(outcomes, key=_rank)
    ]


def reuse_note(run_id: str) -> str:
    """What a training DVC did not run says (its log line, its status, its MLflow note)."""
    return f"reused run {run_id} (DVC restored its outputs: same data, code and params)"


def _status(o: Outcome, is_best: bool) -> str:
    if not o.ok:
        return f"failed: {o.error}"
    status = "best" if is_best else "ok"
    return f"{status}, reused run {o.reused_from}" if o.reused_from else status


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
