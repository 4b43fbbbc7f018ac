"""What a study's trials suggest, as params.yaml overrides (dotted keys): the search's space (TPE)
or a sweep's grid, the tutorial's optimizer comparison (every optimizer with every hidden
activation). Pure: a trial (anything with Optuna's suggest_* methods, e.g. FixedTrial) in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, get_args

from fmnist.params.config import Activation, Optimizer, SearchSpace
from fmnist.params.overrides import hidden_layers
from fmnist.process.errors import ConfigError

DROPOUT_STEP = 0.05
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam")  # the tutorial's list, in its order
ACTIVATIONS = ("sigmoid", "relu")  # its first model's hidden activation, then its last's


class Suggests(Protocol):
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def suggest(trial: Suggests, space: SearchSpace) -> dict[str, Any]:
    """A network and its training from the space, as dotted overrides of params.yaml."""
    depth = trial.suggest_int("layers", *space.layers)
    activation = trial.suggest_categorical("activation", list(space.activations))
    batch_norm = trial.suggest_categorical("batch_norm", list(space.batch_norm))
    dropout = round(trial.suggest_float("dropout", *space.dropout, step=DROPOUT_STEP), 2)
    extras: dict[str, Any] = {"batch_norm": True} if batch_norm else {}
    extras |= {"dropout": dropout} if dropout else {}  # (params.yaml's defaults: none of them)
    hidden = [
        {
            "units": trial.suggest_int(f"units_{i}", *space.units, log=True),
            "activation": activation,
            "name": layer_name(i, depth),
            **extras,
        }
        for i in range(1, depth + 1)
    ]
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    learning_rate = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
    return {
        "model.hidden": hidden,
        "train.optimizer": optimizer,
        "train.learning_rate": float(f"{learning_rate:.3g}"),
        "train.schedule": trial.suggest_categorical("schedule", list(space.schedules)),
        "train.batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "train.epochs": trial.suggest_int("epochs", *space.epochs),
    }


def differences(
    trained_with: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Each key of trained_with's sections ({'model': {...}, 'train': {...}}) whose value is
    not current's, as dotted overrides: what makes params.yaml train what the trial trained."""
    return {
        f"{section}.{key}": value
        for section, values in trained_with.items()
        for key, value in values.items()
        if current.get(section, {}).get(key) != value
    }


def layer_name(index: int, depth: int) -> str:
    """`hidden` for a single hidden layer (the tutorial's name), else hidden_1 .. hidden_n."""
    return "hidden" if depth == 1 else f"hidden_{index}"


def describe(overrides: dict[str, Any]) -> str:
    """One line: 'relu 512-256 bn dropout 0.2, adam 0.001 cosine, batch 128, 30 epochs'."""
    hidden = overrides["model.hidden"]
    first = hidden[0]
    batch_norm = " bn" if first.get("batch_norm") else ""
    dropout = f" dropout {first['dropout']:g}" if first.get("dropout") else ""
    widths = "-".join(str(h["units"]) for h in hidden)
    return (
        f"{first['activation']} {widths}{batch_norm}{dropout}, {overrides['train.optimizer']} "
        f"{overrides['train.learning_rate']:g} {overrides['train.schedule']}, "
        f"batch {overrides['train.batch_size']}, {overrides['train.epochs']} epochs"
    )


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
