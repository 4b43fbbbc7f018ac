"""The search space: a trial's suggestions as params.yaml overrides that the params accept."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import FixedTrial

from fmnist.params.config import Params, SearchSpace, parse_params
from fmnist.params.overrides import apply_dotted
from fmnist.tuning.space import describe, layer_name, suggest

THREE_LAYERS: dict[str, Any] = {
    "layers": 3,
    "activation": "gelu",
    "batch_norm": True,
    "dropout": 0.2,
    "units_1": 512,
    "units_2": 256,
    "units_3": 64,
    "optimizer": "adam",
    "learning_rate": 0.0012345,
    "schedule": "cosine",
    "batch_size": 128,
    "epochs": 30,
}
ONE_LAYER: dict[str, Any] = {
    "layers": 1,
    "activation": "tanh",
    "batch_norm": False,
    "dropout": 0.0,
    "units_1": 100,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "schedule": "constant",
    "batch_size": 32,
    "epochs": 5,
}


def validated(overrides: dict[str, Any]) -> Params:
    """The default params with the overrides applied, validated as params.yaml would be."""
    defaults = parse_params({}).model_dump(mode="json", by_alias=True)
    return parse_params(apply_dotted(defaults, overrides))


def test_three_layers_as_dotted_overrides() -> None:
    overrides = suggest(FixedTrial(THREE_LAYERS), SearchSpace())
    assert set(overrides) == {
        "model.hidden",
        "train.optimizer",
        "train.learning_rate",
        "train.schedule",
        "train.batch_size",
        "train.epochs",
    }
    shared = {"activation": "gelu", "batch_norm": True, "dropout": 0.2}
    assert overrides["model.hidden"] == [
        {"units": 512, **shared, "name": "hidden_1"},
        {"units": 256, **shared, "name": "hidden_2"},
        {"units": 64, **shared, "name": "hidden_3"},
    ]
    assert list(overrides["model.hidden"][0]) == [
        "units",
        "activation",
        "name",
        "batch_norm",
        "dropout",
    ]
    assert overrides["train.optimizer"] == "adam"
    assert overrides["train.learning_rate"] == 0.00123  # three significant digits
    assert overrides["train.schedule"] == "cosine"
    assert overrides["train.batch_size"] == 128
    assert overrides["train.epochs"] == 30


def test_one_layer_keeps_the_tutorials_name() -> None:
    overrides = suggest(FixedTrial(ONE_LAYER), SearchSpace())
    assert overrides["model.hidden"] == [
        {"units": 100, "activation": "tanh", "name": "hidden"}
    ]  # no batch_norm, no dropout: only what a layer uses beyond params.yaml's defaults
    assert overrides["train.optimizer"] == "sgd"
    assert overrides["train.learning_rate"] == 0.01
    assert overrides["train.schedule"] == "constant"
    assert (overrides["train.batch_size"], overrides["train.epochs"]) == (32, 5)


def test_layer_names() -> None:
    assert layer_name(1, 1) == "hidden"
    assert [layer_name(i, 4) for i in range(1, 5)] == [
        "hidden_1",
        "hidden_2",
        "hidden_3",
        "hidden_4",
    ]


@pytest.mark.parametrize("fixed", [ONE_LAYER, THREE_LAYERS], ids=["1-layer", "3-layer"])
def test_overrides_validate_against_the_default_params(fixed: dict[str, Any]) -> None:
    params = validated(suggest(FixedTrial(fixed), SearchSpace()))
    depth = fixed["layers"]
    assert len(params.model.hidden) == depth
    for i, layer in enumerate(params.model.hidden, start=1):
        assert layer.units == fixed[f"units_{i}"]
        assert layer.activation == fixed["activation"]
        assert layer.name == layer_name(i, depth)
        assert layer.batch_norm is fixed["batch_norm"]
        assert layer.dropout == pytest.approx(fixed["dropout"])
    assert params.train.optimizer == fixed["optimizer"]
    assert params.train.learning_rate == pytest.approx(fixed["learning_rate"], rel=1e-2)
    assert params.train.schedule == fixed["schedule"]
    assert params.train.batch_size == fixed["batch_size"]
    assert params.train.epochs == fixed["epochs"]
    # what the overrides do not name keeps its default
    assert params.train.seed == parse_params({}).train.seed
    assert params.model.output_name == "output"


def test_describe_three_layers() -> None:
    line = describe(suggest(FixedTrial(THREE_LAYERS), SearchSpace()))
    assert line == "gelu 512-256-64 bn dropout 0.2, adam 0.00123 cosine, batch 128, 30 epochs"


def test_describe_one_layer_names_no_batch_norm_or_dropout() -> None:
    line = describe(suggest(FixedTrial(ONE_LAYER), SearchSpace()))
    assert line == "tanh 100, sgd 0.01 constant, batch 32, 5 epochs"
    assert "\n" not in line


NARROW = SearchSpace(
    layers=(1, 3),
    units=(8, 16),
    activations=("relu", "selu"),
    dropout=(0.1, 0.2),
    batch_norm=(True,),
    optimizers=("adam", "sgd"),
    learning_rate=(1e-3, 2e-3),
    schedules=("cosine",),
    batch_sizes=(16, 48),
    epochs=(2, 3),
)


def test_a_real_study_asks_within_the_space() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=0)  # seeded: the same asks on every run
    study = optuna.create_study(direction="maximize", sampler=sampler)  # in memory
    depths = set()
    for _ in range(20):
        trial = study.ask()
        overrides = suggest(trial, NARROW)
        hidden = overrides["model.hidden"]
        depths.add(len(hidden))
        assert NARROW.layers[0] <= len(hidden) <= NARROW.layers[1]
        assert len(hidden) == trial.params["layers"]
        for i, layer in enumerate(hidden, start=1):
            assert NARROW.units[0] <= layer["units"] <= NARROW.units[1]
            assert layer["units"] == trial.params[f"units_{i}"]
            assert layer["activation"] in NARROW.activations
            assert layer["batch_norm"] is True
            assert layer["dropout"] in (0.1, 0.15, 0.2)  # the 0.05 grid, rounded
            assert layer["name"] == layer_name(i, len(hidden))
        assert overrides["train.optimizer"] in NARROW.optimizers
        assert 1e-3 <= overrides["train.learning_rate"] <= 2e-3
        assert overrides["train.schedule"] == "cosine"
        assert overrides["train.batch_size"] in NARROW.batch_sizes
        assert NARROW.epochs[0] <= overrides["train.epochs"] <= NARROW.epochs[1]
        validated(overrides)  # raises ConfigError if the params refuse it
        study.tell(trial, sum(layer["units"] for layer in hidden) / 100)
    assert len(study.trials) == 20
    assert len(depths) > 1  # the depth did vary


def test_differences_are_the_trained_keys_params_yaml_says_otherwise() -> None:
    from fmnist.tuning.space import differences

    trained = {
        "model": {"name": "m", "hidden": [{"units": 64, "activation": "relu", "name": "hidden"}]},
        "train": {"optimizer": "adam", "seed": 42, "epochs": 30},
    }
    current = {
        "model": {
            "name": "m",
            "hidden": [{"units": 100, "activation": "sigmoid", "name": "hidden"}],
        },
        "train": {"optimizer": "rmsprop", "seed": 7, "epochs": 30},
    }
    assert differences(trained, current) == {
        "model.hidden": [{"units": 64, "activation": "relu", "name": "hidden"}],
        "train.optimizer": "adam",
        "train.seed": 42,  # params.yaml's seed changed since the trial: written back too
    }
    assert differences(trained, trained) == {}
