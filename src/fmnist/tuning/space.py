"""The search space: one Optuna trial's suggestions -> params.yaml overrides (dotted keys), what
a trial trains with and what the best is written back as (DVC `--set-param`s). Pure: a trial
(anything with Optuna's suggest_* methods, e.g. `optuna.trial.FixedTrial`) and the space in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fmnist.params.config import SearchSpace

DROPOUT_STEP = 0.05


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
