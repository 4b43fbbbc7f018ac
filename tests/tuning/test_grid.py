"""The sweep's grid (pure), and its study: GridSampler gives each cell one trial, a sweep
continued runs the cells with no complete trial, and other settings are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import FixedTrial, TrialState

from fmnist.params.config import parse_params
from fmnist.process.errors import ConfigError, SearchError
from fmnist.tuning import study as study_store
from fmnist.tuning.space import ACTIVATIONS, OPTIMIZERS, Tuning, cell_name, grid, suggest_cell

HIDDEN = [
    {"units": 100, "activation": "sigmoid", "name": "hidden"},
    {"units": 32, "activation": "sigmoid", "dropout": 0.1},
]


def test_default_grid_is_the_tutorials_four_optimizers_by_two_activations() -> None:
    cells = grid(OPTIMIZERS, ACTIVATIONS).cells()
    assert len(cells) == 8
    assert cells[:3] == [
        {"optimizer": "sgd", "activation": "sigmoid"},
        {"optimizer": "sgd", "activation": "relu"},
        {"optimizer": "adagrad", "activation": "sigmoid"},
    ]
    assert {(c["optimizer"], c["activation"]) for c in cells} == {
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


def test_a_cell_sets_only_its_optimizer_and_every_hidden_activation() -> None:
    cells = grid(["adam", "sgd"], ["relu"])
    overrides = suggest_cell(FixedTrial({"optimizer": "adam", "activation": "relu"}), cells, HIDDEN)
    assert overrides == {
        "train.optimizer": "adam",
        "model.hidden": [
            {"units": 100, "activation": "relu", "name": "hidden"},
            {"units": 32, "activation": "relu", "dropout": 0.1},
        ],
    }
    assert cell_name(overrides) == "adam-relu"
    params = parse_params({"model": {"hidden": overrides["model.hidden"]}})  # params take it
    assert [h.activation for h in params.model.hidden] == ["relu", "relu"]


def _sweep(root: Path, cells: Tuning, settings: str = "s") -> tuple[object, int]:
    assert cells.grid
    study = study_store.load(root, parse_params({}).search, cells)
    return study, study_store.pending(study, cells.grid, settings)


def test_the_grid_sampler_gives_each_cell_one_trial(study_root: Path) -> None:
    cells = Tuning("sweep-1", grid(["adam", "sgd"], ["relu", "sigmoid"]))
    assert cells.kind == "sweep" and Tuning("s").kind == "search"
    _, n = _sweep(study_root, cells)
    assert n == 4
    asked = []
    for _ in range(n):  # as four workers do, each its own process and study object
        trial = study_store.load(study_root, parse_params({}).search, cells).ask()
        asked.append(cell_name(suggest_cell(trial, cells.grid, HIDDEN)))  # type: ignore[arg-type]
    assert sorted(asked) == ["adam-relu", "adam-sigmoid", "sgd-relu", "sgd-sigmoid"]


def test_a_continued_sweep_runs_the_cells_never_run_or_interrupted(study_root: Path) -> None:
    cells = Tuning("sweep-2", grid(["adam", "sgd", "rmsprop"], ["relu"]))
    study, _ = _sweep(study_root, cells)
    done, diverged, failed = study.ask(), study.ask(), study.ask()  # type: ignore[attr-defined]
    for trial in (done, diverged, failed):
        suggest_cell(trial, cells.grid, HIDDEN)  # type: ignore[arg-type]
    study.tell(done, 0.8)  # type: ignore[attr-defined]
    study_store.tell_failed(study, diverged, "training diverged")  # done: not tried again
    study.tell(failed, state=TrialState.FAIL)  # no error: interrupted (fail_orphans)

    again, n = _sweep(study_root, cells)
    assert n == 1
    retried = again.ask()  # type: ignore[attr-defined]
    assert (
        suggest_cell(retried, cells.grid, HIDDEN)["train.optimizer"] == failed.params["optimizer"]
    )  # type: ignore[arg-type]

    with pytest.raises(SearchError, match="sweep sweep-2 ran with other settings"):
        _sweep(study_root, cells, "other epochs")
