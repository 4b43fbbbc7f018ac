"""The search's summary: what trials cost, how many are in each state, the best first."""

from __future__ import annotations

from typing import Any

import pytest

from fmnist.tuning.report import Cost, TrialRecord, cost, counts, ranked, ranking, rows


def record(
    number: int,
    state: str = "complete",
    val_accuracy: float | None = 0.8,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> TrialRecord:
    return TrialRecord(number, state, val_accuracy, overrides or {}, run_id)


def test_cost_totals_and_medians() -> None:
    result = cost([(10.0, 1.0), (20.0, 4.0), (30.0, 2.0)])
    assert result is not None
    assert result.trials == 3
    assert result.fit_seconds == pytest.approx(60.0)
    assert result.overhead_seconds == pytest.approx(7.0)
    assert result.median_overhead == pytest.approx(2.0)
    # shares 1/11, 4/24, 2/32: the median is 1/11
    assert result.median_share == pytest.approx(1 / 11)


def test_cost_median_of_an_even_count_and_a_zero_length_trial() -> None:
    result = cost([(0.0, 0.0), (3.0, 1.0)])
    assert result is not None
    assert result.median_overhead == pytest.approx(0.5)
    assert result.median_share == pytest.approx((0.0 + 0.25) / 2)  # 0/0 counts as no share


def test_cost_of_no_trials_is_none() -> None:
    assert cost([]) is None


def test_cost_line() -> None:
    line = Cost(
        trials=3, fit_seconds=60.0, overhead_seconds=7.0, median_overhead=2.0, median_share=1 / 11
    ).line()
    assert line == (
        "3 trials: fit 60.0 s, overhead 7.0 s (per trial: median 2.00 s, 9.1% of its wall time)"
    )


def test_counts_name_every_state() -> None:
    trials = [
        record(0),
        record(1, "pruned", 0.5),
        record(2, "complete"),
        record(3, "failed", None),
        record(4, "running", None),
        record(5, "pruned", 0.4),
    ]
    assert counts(trials) == {"complete": 2, "pruned": 2, "failed": 1, "running": 1, "waiting": 0}


def test_counts_of_nothing_are_zeros() -> None:
    assert counts([]) == {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}


def test_ranking_keeps_complete_trials_best_first() -> None:
    trials = [
        record(0, val_accuracy=0.80),
        record(1, "pruned", 0.99),  # pruned: never ranked, however high its last epoch
        record(2, val_accuracy=0.85),
        record(3, "failed", None),
        record(4, "running", None),
        record(5, val_accuracy=0.70),
        record(6, "complete", None),  # no value: not ranked
    ]
    assert [t.number for t in ranking(trials)] == [2, 0, 5]


def test_ranking_ties_go_to_the_earlier_trial() -> None:
    trials = [record(7, val_accuracy=0.9), record(3, val_accuracy=0.9), record(5, val_accuracy=0.9)]
    assert [t.number for t in ranking(trials)] == [3, 5, 7]


def test_ranking_top_n() -> None:
    trials = [record(n, val_accuracy=n / 10) for n in range(8)]
    assert [t.number for t in ranking(trials)] == [7, 6, 5, 4, 3]  # top 5 by default
    assert [t.number for t in ranking(trials, top=2)] == [7, 6]
    assert ranking(trials, top=0) == []
    assert ranking([]) == []


def test_rows() -> None:
    trials = [
        record(4, val_accuracy=0.876543, overrides={"k": "big"}, run_id="abc"),
        record(9, val_accuracy=0.5, overrides={}, run_id=None),
        TrialRecord(11, "failed", None, {}, error="training diverged"),
    ]
    seen: list[dict[str, Any]] = []

    def describe(overrides: dict[str, Any]) -> str:
        seen.append(overrides)
        return f"net {overrides['k']}"

    assert rows(trials, describe) == [
        {"trial": 4, "config": "net big", "val_accuracy": 0.8765, "state": "complete",
         "run_id": "abc"},
        {"trial": 9, "config": "", "val_accuracy": 0.5, "state": "complete", "run_id": ""},
        {"trial": 11, "config": "", "val_accuracy": None, "state": "failed: training diverged",
         "run_id": ""},
    ]  # fmt: skip
    assert seen == [{"k": "big"}]  # no overrides: describe is not asked


def test_ranked_lists_every_trial_the_complete_ones_best_first() -> None:
    """What a sweep's table shows: the failed and pruned ones too, after the complete ones;
    only validation accuracy orders them (test accuracy is no trial's)."""
    trials = [
        record(0, val_accuracy=0.80),
        record(1, "failed", None),
        record(2, val_accuracy=0.87),
        record(3, "pruned", 0.9),  # its last epoch's: never ranked above a complete trial
    ]
    assert [t.number for t in ranked(trials)] == [2, 0, 1, 3]
    assert ranked([]) == []


def test_rows_of_nothing() -> None:
    assert rows([], lambda overrides: "never") == []
