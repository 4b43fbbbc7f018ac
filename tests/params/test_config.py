import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmnist.params.config import Params, load_params, parse_params
from fmnist.params.overrides import apply_dotted
from fmnist.process.errors import ConfigError
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
        ({"train": {"epochs": "five"}}, "train.epochs: Input should be a whole number"),
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


BOUNDS = [  # (dotted key, its largest value): generous, but 1e9 epochs no longer trains for ever
    ("train.epochs", 1000),
    ("train.batch_size", 60_000),
    ("train.steps_per_execution", 60_000),
    ("evaluate.batch_size", 60_000),
    ("score.batch_size", 60_000),
    ("monitor.reference_rows", 60_000),
    ("monitor.min_rows", 60_000),
    ("search.trials", 1000),
    ("search.warmup_epochs", 1000),
]


@pytest.mark.parametrize(("key", "largest"), BOUNDS, ids=[key for key, _ in BOUNDS])
def test_a_count_above_its_bound_is_one_line_naming_the_bound(key: str, largest: int) -> None:
    assert parse_params(apply_dotted({}, {key: largest}))  # the bound itself is allowed
    with pytest.raises(ConfigError) as err:
        parse_params(apply_dotted({}, {key: largest + 1}))
    expected = f"params.yaml: {key}: Input should be less than or equal to {largest}"
    assert str(err.value) == f"{expected} (got {largest + 1})"


def test_the_network_has_bounds() -> None:
    widest = {"units": 8192, "activation": "relu"}
    assert len(parse_params({"model": {"hidden": [widest] * 32}}).model.hidden) == 32
    with pytest.raises(
        ConfigError, match=r"^params.yaml: model.hidden: Tuple should have at most 32"
    ):
        parse_params({"model": {"hidden": [widest] * 33}})
    with pytest.raises(ConfigError) as err:
        parse_params({"model": {"hidden": [{"units": 8193, "activation": "relu"}]}})
    assert str(err.value) == (
        "params.yaml: model.hidden.0.units: Input should be less than or equal to 8192 (got 8193)"
    )


@pytest.mark.parametrize("key", ["prepare.seed", "train.seed", "monitor.seed", "search.seed"])
def test_seeds_are_what_numpy_takes(key: str) -> None:
    assert parse_params(apply_dotted({}, {key: 2**32 - 1}))
    with pytest.raises(ConfigError, match=rf"^params.yaml: {key}: Input should be less than 4294"):
        parse_params(apply_dotted({}, {key: 2**32}))
    with pytest.raises(ConfigError, match=rf"^params.yaml: {key}: Input should be greater than"):
        parse_params(apply_dotted({}, {key: -1}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e9, "Input should be less than or equal to 1000 (got 1000000000.0)"),  # the bound first
        (5.0, "Input should be a whole number, written without a decimal point (got 5.0)"),
        (1e3, "Input should be a whole number, written without a decimal point (got 1000.0)"),
        (5.5, "Input should be a whole number (got 5.5)"),
        (True, "Input should be a whole number (got True)"),
        ("5", "Input should be a whole number (got '5')"),
        (np.float64(5.0), "Input should be a whole number, written without a decimal point"),
    ],
    ids=["1e9", "5.0", "1e3", "5.5", "true", "text", "numpy-float"],
)
def test_a_count_is_a_whole_number_as_written(value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"epochs": value}})
    assert str(err.value).startswith(f"params.yaml: train.epochs: {expected}")
    assert "\n" not in str(err.value)


NOT_WHOLE = [  # (params, the key in the line)
    ({"download": {"retries": 2.0}}, "download.retries"),
    ({"prepare": {"seed": 1.0}}, "prepare.seed"),
    ({"evaluate": {"batch_size": 1e3}}, "evaluate.batch_size"),
    ({"score": {"batch_size": True}}, "score.batch_size"),
    ({"monitor": {"min_rows": "100"}}, "monitor.min_rows"),
    ({"search": {"startup_trials": 5.0}}, "search.startup_trials"),
    ({"model": {"hidden": [{"units": 64.0, "activation": "relu"}]}}, "model.hidden.0.units"),
]


@pytest.mark.parametrize(("raw", "key"), NOT_WHOLE, ids=[key for _, key in NOT_WHOLE])
def test_every_count_wants_a_whole_number(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^params.yaml: {key}: Input should be a whole number"):
        parse_params(raw)


def test_whole_numbers_from_yaml_and_python_still_pass(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 1_000\n", encoding="utf-8")
    assert (load_params(path).train.epochs, load_params(path).train.batch_size) == (7, 1000)
    assert load_params(path, {"train.epochs": 9}).train.epochs == 9  # an override, as the sweep's
    numpy = parse_params({"train": {"epochs": np.int64(3), "batch_size": np.int32(16)}}).train
    assert (numpy.epochs, numpy.batch_size) == (3, 16)
    assert type(numpy.epochs) is int  # stored as Python's int: it dumps to JSON and YAML


@pytest.mark.slow  # real dvc processes
def test_dvc_exp_run_set_param_1e9_is_refused_in_one_line(tmp_path: Path) -> None:
    """`dvc exp run -S train.epochs=1e9` writes `epochs: 1000000000.0` into params.yaml."""
    ident = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
             for what, value in (("NAME", "t"), ("EMAIL", "t@t.invalid"))}  # fmt: skip
    env = {**os.environ, **ident}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True)
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)  # comments and all
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: 'true'\n    params: [train.epochs]\n", encoding="utf-8"
    )
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=tmp_path, check=True, env=env)

    def exp_run(setting: str) -> str:  # DVC applies the experiment to params.yaml
        subprocess.run([*dvc, "exp", "run", "-q", "-S", setting], cwd=tmp_path, check=True, env=env)
        return params.read_text(encoding="utf-8")

    assert "\n  epochs: 7\n" in exp_run("train.epochs=7")  # a YAML int
    assert load_params(params).train.epochs == 7
    assert "\n  epochs: 1000000000.0\n" in exp_run("train.epochs=1e9")  # a YAML float
    with pytest.raises(ConfigError) as err:
        load_params(params)
    assert str(err.value) == (
        f"{params}: train.epochs: Input should be less than or equal to 1000 (got 1000000000.0)"
    )
