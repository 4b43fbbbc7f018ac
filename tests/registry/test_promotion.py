"""The promotion rule beyond promote-or-not: by hand below the champion is promoted and
flagged (a rollback is a reason); tests/registry/test_registry.py: the champion again."""

from __future__ import annotations

from typing import Any

from fmnist.registry.promotion import decide_promotion

RULE: dict[str, Any] = {"min_accuracy": 0.80, "min_delta": 0.001}
CHAMPION_V1 = (1, 0.8619)


def test_by_hand_below_the_champion_is_promoted_and_says_by_how_much() -> None:
    decision = decide_promotion(0.8378, CHAMPION_V1, **RULE, require_better=False)
    assert decision.promote and decision.below_champion
    assert (decision.accuracy, decision.compared_version, decision.compared_accuracy) == (
        0.8378, 1, 0.8619,
    )  # fmt: skip


def test_forced_below_the_champion_is_flagged_too() -> None:
    decision = decide_promotion(0.50, CHAMPION_V1, **RULE, require_better=False, force=True)
    assert decision.promote and decision.below_champion and decision.reason == "forced by hand"


def test_by_hand_level_with_or_above_the_champion_or_without_one_is_not_flagged() -> None:
    for accuracy, champion in ((0.8619, CHAMPION_V1), (0.87, CHAMPION_V1), (0.85, None)):
        decision = decide_promotion(accuracy, champion, **RULE, require_better=False)
        assert decision.promote and not decision.below_champion, (accuracy, champion)


def test_the_automatic_rule_refuses_a_worse_version_without_the_flag() -> None:
    decision = decide_promotion(0.8378, CHAMPION_V1, **RULE)
    assert not decision.promote and not decision.below_champion
