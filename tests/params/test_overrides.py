from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from fmnist.params.config import load_params
from fmnist.params.overrides import (
    RunOverrides,
    apply_dotted,
    dotted_overrides,
    hidden_layers,
    hydra_value,
    set_param_args,
)
from fmnist.process.errors import ConfigError
from tests.conftest import REPO

TUTORIAL_HIDDEN = [{"units": 100, "activation": "sigmoid", "name": "hidden"}]


def test_nothing_given_changes_nothing() -> None:
    assert dotted_overrides(RunOverrides(), TUTORIAL_HIDDEN) == {}
    assert set_param_args({}) == []


def test_scalars_map_to_their_params_keys() -> None:
    dotted = dotted_overrides(
        RunOverrides(epochs=1, batch_size=64, optimizer="adam", learning_rate=0.01, model_name="m"),
        TUTORIAL_HIDDEN,
    )
    assert dotted == {
        "train.epochs": 1,
        "train.batch_size": 64,
        "train.optimizer": "adam",
        "train.learning_rate": 0.01,
        "model.name": "m",
    }


def test_hidden_units_keep_names_and_activation_of_existing_layers() -> None:
    layers = hidden_layers(TUTORIAL_HIDDEN, [64, 32], None)
    assert layers == [
        {"units": 64, "activation": "sigmoid", "name": "hidden"},
        {"units": 32, "activation": "sigmoid"},
    ]


def test_hidden_activation_applies_to_every_layer() -> None:
    layers = hidden_layers(TUTORIAL_HIDDEN, [64, 32], "relu")
    assert [layer["activation"] for layer in layers] == ["relu", "relu"]
    assert dotted_overrides(RunOverrides(hidden_activation="relu"), TUTORIAL_HIDDEN) == {
        "model.hidden": [{"units": 100, "activation": "relu", "name": "hidden"}]
    }


def test_apply_dotted_sets_nested_keys_without_touching_the_input() -> None:
    raw = {"train": {"epochs": 5, "seed": 42}}
    assert apply_dotted(raw, {"train.epochs": 1, "model.name": "x"}) == {
        "train": {"epochs": 1, "seed": 42},
        "model": {"name": "x"},
    }
    assert raw == {"train": {"epochs": 5, "seed": 42}}


@pytest.mark.parametrize(
    "value",
    [
        1,
        0.001,
        "adam",
        "패션 MNIST 모델",
        "it's a \\ name",
        "ends in \\",
        "x\\'y",
        [
            {"units": 64, "activation": "relu", "name": "hidden"},
            {"units": 32, "activation": "tanh"},
        ],
    ],
)
def test_hydra_parses_back_what_we_write(value: object) -> None:
    """The same grammar `dvc exp run -S` parses (Hydra's), on every kind of value we send."""
    [arg] = set_param_args({"k": value})[1:]
    parsed = OverridesParser.create().parse_overrides([arg])[0]
    assert parsed.key_or_group == "k"
    assert parsed.value() == value


def test_hydra_value_rejects_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        hydra_value(object())


def test_bad_override_is_one_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs.*overridden.*greater than 0"):
        load_params(REPO / "params.yaml", {"train.epochs": 0})
    with pytest.raises(ConfigError, match=r"model\.hidden\.0\.activation"):
        load_params(REPO / "params.yaml", {"model.hidden": [{"units": 3, "activation": "nope"}]})


def test_good_override_validates() -> None:
    params = load_params(REPO / "params.yaml", {"train.epochs": 1, "model.name": "x y"})
    assert params.train.epochs == 1
    assert params.model.name == "x y"


@pytest.mark.parametrize(
    "value",
    [
        "${oc.env:HOME}",  # OmegaConf would put the worker's $HOME here
        "a \\${b} and \\\\${c}",
        "$HOME $(id) `id` {a: 1} [x]",
        "x: [1, 2]",
        "it's ${x}",
    ],
)
def test_string_values_reach_params_yaml_as_literals(tmp_path: Path, value: str) -> None:
    """Through what `dvc exp run -S` runs on params.yaml (Hydra's overrides, then OmegaConf):
    no interpolation, no YAML, no shell."""
    import yaml
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text("model:\n  name: x\n", encoding="utf-8")
    [arg] = set_param_args({"model.name": value})[1:]
    apply_overrides(str(params), [arg])
    assert yaml.safe_load(params.read_text(encoding="utf-8"))["model"]["name"] == value
