"""Which study a tuning run adds trials to: the search's (TPE over params.yaml `search.space`) or
a sweep's, the tutorial's optimizer comparison as a grid (Optuna's GridSampler): every optimizer
with every hidden activation, the rest as given. Pure: names and values in, overrides out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from fmnist.params.config import Activation, Optimizer
from fmnist.params.overrides import hidden_layers
from fmnist.process.errors import ConfigError
from fmnist.tuning.space import Suggests

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")  # the tutorial's list, in its order
ACTIVATIONS = ("sigmoid", "relu")  # its first model's hidden activation, then its last's


@dataclass(frozen=True)
class Grid:
    """A sweep's cells: optimizers x hidden activations."""

    optimizers: tuple[str, ...]
    activations: tuple[str, ...]

    def space(self) -> dict[str, list[str]]:
        """GridSampler's search space (and what a trial of it suggests)."""
        return {"optimizer": list(self.optimizers), "activation": list(self.activations)}

    def cells(self) -> list[dict[str, str]]:
        """Every cell as a trial's params, optimizer-major (as the tutorial lists them)."""
        return [
            {"optimizer": o, "activation": a} for o in self.optimizers for a in self.activations
        ]


@dataclass(frozen=True)
class Tuning:
    """The study a run adds trials to: the search's search.study, or a sweep's name and grid."""

    study: str
    grid: Grid | None = None  # None: the search's space, TPE and the median pruner

    @property
    def kind(self) -> str:
        """`sweep` or `search`: the word its MLflow tags and artifacts use."""
        return "sweep" if self.grid else "search"


def _checked(kind: str, values: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    values = list(values)
    unknown = [v for v in values if v not in allowed]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if not values:
        raise ConfigError(f"sweep {kind}: empty; give at least one of {', '.join(allowed)}")
    if unknown:
        raise ConfigError(f"sweep {kind}: {unknown[0]!r} is not one of {', '.join(allowed)}")
    if repeated:
        raise ConfigError(f"sweep {kind}: {repeated[0]!r} given twice")
    return tuple(values)


def grid(optimizers: Sequence[str], activations: Sequence[str]) -> Grid:
    """The grid, every value checked (ConfigError: one line naming the bad one)."""
    return Grid(
        _checked("optimizers", optimizers, get_args(Optimizer)),
        _checked("activations", activations, get_args(Activation)),
    )


def suggest_cell(
    trial: Suggests, cells: Grid, hidden: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """A cell as dotted overrides: its optimizer, and its activation on every hidden layer."""
    activation = trial.suggest_categorical("activation", list(cells.activations))
    return {
        "train.optimizer": trial.suggest_categorical("optimizer", list(cells.optimizers)),
        "model.hidden": hidden_layers(hidden, None, activation),
    }


def cell_name(overrides: Mapping[str, Any]) -> str:
    """`adam-relu`: a cell's overrides as its row, its run and its DVC experiment say it."""
    return f"{overrides['train.optimizer']}-{overrides['model.hidden'][0]['activation']}"
