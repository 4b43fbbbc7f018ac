"""Per-run overrides of params.yaml as DVC `--set-param` arguments (pure): DVC applies them in
the experiment's own workspace, so the user's params.yaml never changes."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any


@dataclass(frozen=True)
class RunOverrides:
    """What one pipeline run may change; None keeps params.yaml's value."""

    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    hidden_units: Sequence[int] | None = None  # one entry per hidden layer
    hidden_activation: str | None = None  # for every hidden layer
    model_name: str | None = None


def hidden_layers(
    current: Sequence[Mapping[str, Any]], units: Sequence[int] | None, activation: str | None
) -> list[dict[str, Any]]:
    """params.yaml's hidden layers with new units (and so count) and/or activation; a kept
    layer keeps its name, added ones take the last one's activation and no name."""
    layers = [dict(layer) for layer in current]
    if units is not None:
        added = {"activation": layers[-1]["activation"]} if layers else {}
        layers = [{**(layers[i:] or [added])[0], "units": n} for i, n in enumerate(units)]
    if activation is not None:
        layers = [{**layer, "activation": activation} for layer in layers]
    return [{k: v for k, v in layer.items() if v is not None} for layer in layers]


def dotted_overrides(
    overrides: RunOverrides, current_hidden: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """{'train.epochs': 1, 'model.hidden': [...]}: only what the run changes."""
    changed = {
        "train.epochs": overrides.epochs,
        "train.batch_size": overrides.batch_size,
        "train.optimizer": overrides.optimizer,
        "train.learning_rate": overrides.learning_rate,
        "model.name": overrides.model_name,
    }
    dotted: dict[str, Any] = {key: value for key, value in changed.items() if value is not None}
    if overrides.hidden_units is not None or overrides.hidden_activation is not None:
        dotted["model.hidden"] = hidden_layers(
            current_hidden, overrides.hidden_units, overrides.hidden_activation
        )
    return dotted


def apply_dotted(raw: Mapping[str, Any], dotted: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the params mapping with each dotted key set."""
    result = copy.deepcopy(dict(raw))
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        reduce(lambda node, part: node.setdefault(part, {}), parents, result)[leaf] = value
    return result


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (what `dvc exp run -S` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A literal: `${...}` would be resolved by OmegaConf (`${oc.env:HOME}` pulls the
        # worker's environment in), so every `${` is escaped (`\${`, with the backslashes
        # before it doubled). Then Hydra: a backslash escapes only a quote (or the closing one).
        literal = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
        escaped = re.sub(
            r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), literal
        )
        return f"'{escaped}'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise TypeError(f"no Hydra form for {type(value).__name__}")


def set_param_args(dotted: Mapping[str, Any]) -> list[str]:
    """['-S', 'train.epochs=1', ...] for `dvc exp run`."""
    return [arg for k, v in dotted.items() for arg in ("-S", f"{k}={hydra_value(v)}")]
