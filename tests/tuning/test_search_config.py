"""A bad search space (params.yaml `search`) is one ConfigError line naming the key, and
`fmnist search` stops on it with exit code 2 before it starts anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fmnist.params.config import SearchSpace, parse_params
from fmnist.process.errors import ConfigError

BAD_SPACES = [
    ({"layers": [3, 1]}, "search.space.layers: empty range [3, 1]"),
    ({"learning_rate": [0.1, 0.01]}, "search.space.learning_rate: empty range [0.1, 0.01]"),
    ({"optimizers": ["adam", "adamw"]}, "search.space.optimizers.1: Input should be 'sgd'"),
    ({"activations": []}, "search.space.activations: Tuple should have at least 1 item"),
    ({"batch_sizes": []}, "search.space.batch_sizes: Tuple should have at least 1 item"),
    ({"dropout": [0, 1]}, "search.space.dropout: a rate in [0, 1), got [0.0, 1.0]"),
    ({"units": [0, 8]}, "search.space.units.0: Input should be greater than 0 (got 0)"),
    ({"epochs": [0, 3]}, "search.space.epochs.0: Input should be greater than 0"),
    ({"learning_rate": [0, 0.1]}, "search.space.learning_rate: must be above 0, got [0.0, 0.1]"),
]
IDS = [next(iter(space)) for space, _ in BAD_SPACES]  # the key each case breaks


@pytest.mark.parametrize(("space", "expected"), BAD_SPACES, ids=IDS)
def test_a_bad_space_is_one_line_naming_the_key(space: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({"search": {"space": space}})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("params.yaml: ")
    assert expected in message


def test_the_unknown_optimizer_is_named() -> None:
    with pytest.raises(ConfigError, match="adamw"):
        parse_params({"search": {"space": {"optimizers": ["adamw"]}}})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"search": {"trials": 0}}, "search.trials: Input should be greater than 0"),
        ({"search": {"study": "a/b"}}, "search.study: String should match pattern"),
        ({"search": {"space": {"depth": [1, 2]}}}, "search.space.depth: unknown key"),
        ({"train": {"schedule": "linear"}}, "train.schedule: Input should be 'constant'"),
        (
            {"model": {"hidden": [{"units": 8, "activation": "relu", "dropout": 1.0}]}},
            "model.hidden.0.dropout: Input should be less than 1",
        ),
    ],
    ids=["trials", "study", "unknown-key", "schedule", "layer-dropout"],
)
def test_other_bad_search_keys(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    assert "\n" not in str(caught.value)
    assert expected in str(caught.value)


SPACE_BOUNDS = [  # (key, its largest end): what params accept for what it is tried as
    ("layers", 32),  # model.hidden's length
    ("units", 8192),
    ("epochs", 1000),
]


@pytest.mark.parametrize(("key", "largest"), SPACE_BOUNDS, ids=[key for key, _ in SPACE_BOUNDS])
def test_a_range_ends_within_its_params_bound(key: str, largest: int) -> None:
    assert getattr(parse_params({"search": {"space": {key: [1, largest]}}}).search.space, key)
    with pytest.raises(ConfigError) as caught:
        parse_params({"search": {"space": {key: [1, largest + 1]}}})
    assert str(caught.value) == (
        f"params.yaml: search.space.{key}.1: Input should be less than or equal to {largest} "
        f"(got {largest + 1})"
    )


def test_the_batch_sizes_are_bounded_too() -> None:
    assert parse_params({"search": {"space": {"batch_sizes": [60_000]}}}).search.space
    with pytest.raises(
        ConfigError, match=r"batch_sizes.1: Input should be less than or equal to 60000"
    ):
        parse_params({"search": {"space": {"batch_sizes": [32, 60_001]}}})


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"epochs": [5, 1e9]}, "epochs.1: Input should be less than or equal to 1000"),
        ({"epochs": [5.0, 40]}, "epochs.0: Input should be a whole number, written without"),
        ({"layers": [1, 2.5]}, "layers.1: Input should be a whole number (got 2.5)"),
        ({"units": [True, 64]}, "units.0: Input should be a whole number (got True)"),
        ({"batch_sizes": [32, 64.0]}, "batch_sizes.1: Input should be a whole number, written"),
    ],
    ids=["1e9", "5.0", "2.5", "true", "batch-64.0"],
)
def test_a_range_of_counts_wants_whole_numbers(space: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({"search": {"space": space}})
    assert str(caught.value).startswith(f"params.yaml: search.space.{expected}")


def test_edges_of_the_space_are_allowed() -> None:
    space = parse_params(
        {"search": {"space": {"layers": [2, 2], "dropout": [0, 0.95], "units": [1, 1]}}}
    ).search.space
    assert (space.layers, space.dropout, space.units) == ((2, 2), (0.0, 0.95), (1, 1))
    assert parse_params({}).search.space == SearchSpace()


@pytest.mark.usefixtures("cli_side_effects_undone")
@pytest.mark.parametrize(("space", "expected"), BAD_SPACES[:3], ids=IDS[:3])
def test_fmnist_search_stops_on_a_bad_space_with_exit_2(
    tmp_path: Path, space: dict[str, Any], expected: str
) -> None:
    from fmnist.cli import load_commands
    from fmnist.cli.app import app

    load_commands(["search"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"search": {"space": space}}), encoding="utf-8")
    result = CliRunner().invoke(app, ["search", "--params", str(path)])
    assert result.exit_code == ConfigError.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"fmnist search: error: {path}: ")
    assert expected in lines[0]
    assert result.stdout == ""  # nothing started: no study line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no db, no data
