"""The sweep's grid and its choice of the best training (pure)."""

from __future__ import annotations

import pytest

from fmnist.params.overrides import RunOverrides
from fmnist.process.errors import ConfigError
from fmnist.tuning.grid import (
    ACTIVATIONS,
    OPTIMIZERS,
    Outcome,
    Training,
    best,
    comparison_rows,
    grid,
    reuse_note,
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


def outcome(
    name: str,
    val: float | None,
    val_loss: float | None = 0.5,
    test: float | None = 0.8,
    **kw: object,
) -> Outcome:
    optimizer, activation = name.split("-")
    return Outcome(
        Training(name, optimizer, activation),
        experiment=f"s-{name}",
        val_accuracy=val,
        val_loss=val_loss,
        test_accuracy=test if val is not None else None,
        test_loss=0.4 if val is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def test_best_is_the_highest_validation_accuracy_then_the_lower_validation_loss() -> None:
    a = outcome("sgd-relu", 0.85, 0.40)
    b = outcome("adam-relu", 0.87, 0.38)
    c = outcome("rmsprop-relu", 0.87, 0.35)
    assert best([a, b, c]) is c
    assert [r["training"] for r in comparison_rows([a, b, c])] == [
        "rmsprop-relu", "adam-relu", "sgd-relu",
    ]  # fmt: skip


def test_test_accuracy_plays_no_part_in_choosing() -> None:
    """The best test accuracy with a worse validation accuracy loses: no selection on test."""
    peeked = outcome("adam-relu", 0.86, 0.30, test=0.90)
    chosen = outcome("sgd-relu", 0.87, 0.45, test=0.84)
    assert best([peeked, chosen]) is chosen
    rows = comparison_rows([peeked, chosen])
    assert [(r["training"], r["status"]) for r in rows] == [
        ("sgd-relu", "best"),
        ("adam-relu", "ok"),
    ]
    assert [r["test_accuracy"] for r in rows] == [0.84, 0.9]  # still reported for every cell


def test_failed_trainings_never_win_and_all_failed_means_no_best() -> None:
    failed = outcome("adam-relu", None, None, error="fmnist train: error: training diverged")
    ok = outcome("sgd-relu", 0.70)
    assert best([failed, ok]) is ok
    assert best([failed]) is None
    assert best([]) is None
    # an error wins over any metrics it may carry
    errored = outcome("rmsprop-relu", 0.99, 0.01, test=0.99, error="fmnist evaluate: error: x")
    assert best([errored, ok]) is ok
    assert comparison_rows([errored, ok])[-1]["status"] == "failed: fmnist evaluate: error: x"


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
    assert rows[1]["val_accuracy"] == 0.8012
    assert rows[1]["fit_seconds"] == 3.14
    assert rows[2]["val_accuracy"] is None and rows[2]["test_accuracy"] is None
    assert set(rows[0]) == {
        "training", "optimizer", "activation", "val_accuracy", "val_loss", "test_accuracy",
        "test_loss", "fit_seconds", "status", "experiment", "run_id", "reused_from",
    }  # fmt: skip


def test_a_reused_training_says_which_run_it_reused() -> None:
    reused = outcome("adam-relu", 0.88, run_id="r1", reused_from="r1")
    rows = comparison_rows([outcome("sgd-relu", 0.80, run_id="r2"), reused])
    assert [r["status"] for r in rows] == ["best, reused run r1", "ok"]
    assert rows[0]["reused_from"] == "r1" and rows[1]["reused_from"] == ""
    assert reuse_note("r1") == (
        "reused run r1 (DVC restored its outputs: same data, code and params)"
    )
