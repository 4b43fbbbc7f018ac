from pathlib import Path

import pytest

from fmnist.config import Params, load_params, parse_params
from fmnist.errors import ConfigError
from tests.conftest import REPO


def test_repo_params_are_the_tutorials_run() -> None:
    params = load_params(REPO / "params.yaml")
    assert params == Params()  # params.yaml spells out the defaults
    assert params.model.name == "패션 MNIST 모델"
    assert (params.train.optimizer, params.train.epochs, params.train.batch_size) == (
        "rmsprop",
        5,
        32,
    )
    assert (params.prepare.val_size, params.prepare.seed) == (0.2, 42)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"train": {"optimizer": "adamw"}}, "train.optimizer: Input should be 'sgd', 'adagrad'"),
        ({"train": {"epochs": 0}}, "train.epochs: Input should be greater than 0 (got 0)"),
        ({"train": {"batch_size": -3}}, "train.batch_size: Input should be greater than 0"),
        ({"train": {"epochs": "five"}}, "train.epochs: Input should be a valid integer"),
        ({"model": {"hidden": [{"units": 0, "activation": "relu"}]}}, "model.hidden.0.units"),
        (
            {"model": {"hidden": [{"units": 5, "activation": "sigmoidd"}]}},
            "model.hidden.0.activation",
        ),
        ({"prepare": {"val_size": 1.5}}, "prepare.val_size: Input should be less than 1"),
        ({"trian": {"epochs": 3}}, "trian: unknown key"),
        ({"train": {"epochz": 3}}, "train.epochz: unknown key"),
    ],
)
def test_bad_params_are_one_line_naming_the_key(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_params_are_frozen() -> None:
    params = parse_params({})
    with pytest.raises(ValueError):
        params.train.epochs = 3  # type: ignore[misc]


def test_load_params_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(bad)


def test_register_section_keeps_its_yaml_name() -> None:
    assert parse_params({"register": {"model_name": "shoes"}}).register_.model_name == "shoes"


def test_a_model_name_keras_refuses_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^params.yaml: model.name: cannot contain '/' \(Keras"):
        parse_params({"model": {"name": "shirts/shoes"}})
