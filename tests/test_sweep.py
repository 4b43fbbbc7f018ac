"""The sweep's grid and its choice of the best training (pure)."""

from __future__ import annotations

import pytest

from fmnist.errors import ConfigError
from fmnist.overrides import RunOverrides
from fmnist.sweep import (
    ACTIVATIONS,
    OPTIMIZERS,
    Outcome,
    Training,
    best,
    comparison_rows,
    grid,
    training_overrides,
)


def test_default_grid_is_the_tutorials_four_optimizers_by_two_activations() -> None:
    cells = grid(OPTIMIZERS, ACTIVATIONS)
    assert len(cells) == 8
    assert [c.name for c in cells[:3]] == ["sgd-sigmoid", "sgd-relu", "adagrad-sigmoid"]
    assert {(c.optimizer, c.activation) for c in cells} == {
        (o, a) for o in ("sgd", "adagrad", "rmsprop", "adam") for a in ("sigmoid", "relu")
    }


@pytest.mark.parametrize(
    ("optimizers", "activations", "message"),
    [
        ([], ["relu"], "sweep optimizers: empty"),
        (["adam"], [], "sweep activations: empty"),
        (["adamw"], ["relu"], "'adamw' is not one of sgd, adagrad, rmsprop, adam"),
        (["adam"], ["rleu"], "sweep activations: 'rleu' is not one of relu"),
        (["adam", "sgd", "adam"], ["relu"], "'adam' given twice"),
    ],
)
def test_bad_grid_is_one_line(optimizers: list[str], activations: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grid(optimizers, activations)


def test_a_cell_overrides_only_its_optimizer_and_activation() -> None:
    base = RunOverrides(epochs=1, learning_rate=0.01, hidden_units=[32])
    got = training_overrides(Training("adam-relu", "adam", "relu"), base)
    assert got == RunOverrides(
        epochs=1, learning_rate=0.01, hidden_units=[32], optimizer="adam", hidden_activation="relu"
    )


def outcome(name: str, accuracy: float | None, loss: float | None = 0.5, **kw: object) -> Outcome:
    optimizer, activation = name.split("-")
    return Outcome(
        Training(name, optimizer, activation),
        experiment=f"s-{name}",
        test_accuracy=accuracy,
        test_loss=loss,
        **kw,  # type: ignore[arg-type]
    )


def test_best_is_the_highest_accuracy_then_the_lower_loss() -> None:
    a = outcome("sgd-relu", 0.85, 0.40)
    b = outcome("adam-relu", 0.87, 0.38)
    c = outcome("rmsprop-relu", 0.87, 0.35)
    assert best([a, b, c]) is c


def test_failed_trainings_never_win_and_all_failed_means_no_best() -> None:
    failed = outcome("adam-relu", None, None, error="fmnist train: error: training diverged")
    ok = outcome("sgd-relu", 0.70)
    assert best([failed, ok]) is ok
    assert best([failed]) is None
    assert best([]) is None


def test_comparison_rows_best_first_failed_last_with_their_error() -> None:
    rows = comparison_rows(
        [
            outcome("sgd-relu", 0.80123456, fit_seconds=3.14159),
            outcome("adam-relu", None, None, error="diverged"),
            outcome("rmsprop-relu", 0.86),
        ]
    )
    assert [r["training"] for r in rows] == ["rmsprop-relu", "sgd-relu", "adam-relu"]
    assert [r["status"] for r in rows] == ["best", "ok", "failed: diverged"]
    assert rows[1]["test_accuracy"] == 0.8012
    assert rows[1]["fit_seconds"] == 3.14
    assert rows[2]["test_accuracy"] is None
    assert set(rows[0]) == {
        "training", "optimizer", "activation", "test_accuracy", "test_loss", "fit_seconds",
        "status", "experiment", "run_id",
    }  # fmt: skip
