from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.errors import TrackingError
from fmnist.registry import (
    CHAMPION,
    HISTORY_TAG,
    decide_promotion,
    list_versions,
    previous_champion,
    promote,
    rollback,
)

NAME = "fashion-mnist"
RULE = {"min_accuracy": 0.80, "min_delta": 0.001}


# --- the rule, pure ---------------------------------------------------------------------------


def test_first_good_version_is_promoted() -> None:
    decision = decide_promotion(0.85, None, **RULE)
    assert decision.promote
    assert "no champion yet" in decision.reason


def test_below_threshold_is_never_promoted_automatically() -> None:
    decision = decide_promotion(0.79, None, **RULE)
    assert not decision.promote
    assert "below min_accuracy 0.8000" in decision.reason


def test_exactly_the_threshold_is_enough() -> None:
    assert decide_promotion(0.80, None, **RULE).promote


def test_equal_accuracy_does_not_beat_the_champion() -> None:
    decision = decide_promotion(0.85, (3, 0.85), **RULE)
    assert not decision.promote
    assert (decision.compared_version, decision.compared_accuracy) == (3, 0.85)


def test_a_gain_of_min_delta_is_not_enough_but_more_is() -> None:
    assert not decide_promotion(0.8505, (3, 0.85), min_accuracy=0.8, min_delta=0.001).promote
    assert decide_promotion(0.8520, (3, 0.85), **RULE).promote


def test_by_hand_only_the_threshold_applies_and_force_skips_it() -> None:
    assert decide_promotion(0.81, (3, 0.90), **RULE, require_better=False).promote
    assert not decide_promotion(0.50, (3, 0.90), **RULE, require_better=False).promote
    assert decide_promotion(0.50, (3, 0.90), **RULE, require_better=False, force=True).promote


def test_previous_champion_skips_deleted_versions() -> None:
    assert previous_champion([1, 2, 4], 4, {1, 4}) == 1
    assert previous_champion([4], 4, {4}) is None


# --- on a real (sqlite) store ----------------------------------------------------------------


def _versions(uri: str, accuracies: list[float]) -> MlflowClient:
    client = MlflowClient(uri)
    client.create_registered_model(NAME)
    for acc in accuracies:
        client.create_model_version(
            NAME, source="file:///nowhere", tags={"test_accuracy": f"{acc:.4f}", "optimizer": "sgd"}
        )
    return client


def _champion(client: MlflowClient) -> int:
    return int(client.get_model_version_by_alias(NAME, CHAMPION).version)


def test_promote_records_the_decision_and_moves_the_alias(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.85, 0.84, 0.87])
    assert promote(tracking_uri, NAME, 1, **RULE, require_better=True).promote
    assert not promote(tracking_uri, NAME, 2, **RULE, require_better=True).promote
    assert promote(tracking_uri, NAME, 3, **RULE, require_better=True).promote
    assert _champion(client) == 3
    tags = client.get_model_version(NAME, "2").tags
    assert tags["fmnist.promotion.promoted"] == "false"
    assert tags["fmnist.promotion.compared_version"] == "1"
    assert tags["fmnist.promotion.compared_accuracy"] == "0.8500"
    rows = list_versions(tracking_uri, NAME)
    assert [(r.version, r.aliases) for r in rows] == [(3, [CHAMPION]), (2, []), (1, [])]


def test_rollback_gives_champion_back_then_refuses(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.85, 0.87])
    with pytest.raises(TrackingError, match="no champion to roll back"):
        rollback(tracking_uri, NAME)
    promote(tracking_uri, NAME, 1, **RULE, require_better=True)
    promote(tracking_uri, NAME, 2, **RULE, require_better=True)
    assert rollback(tracking_uri, NAME) == (2, 1)
    assert _champion(client) == 1
    with pytest.raises(TrackingError, match="no previous champion"):
        rollback(tracking_uri, NAME)
    assert _champion(client) == 1


def test_failed_promotion_leaves_aliases_as_they_were(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.85, 0.50])
    promote(tracking_uri, NAME, 1, **RULE, require_better=True)
    with pytest.raises(TrackingError, match="no version 9"):
        promote(tracking_uri, NAME, 9, **RULE, require_better=False)
    assert not promote(tracking_uri, NAME, 2, **RULE, require_better=False).promote
    assert _champion(client) == 1
    assert client.get_registered_model(NAME).tags[HISTORY_TAG] == "[1]"
    assert [m.name for m in client.search_registered_models()] == [NAME]  # lock released


def _promote_in_process(uri: str, version: int) -> bool:
    return promote(uri, NAME, version, **RULE, require_better=False).promote


def test_concurrent_promotions_leave_one_champion_and_lose_no_history(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _versions(uri, [0.81, 0.82, 0.83, 0.84])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_promote_in_process, [(uri, v) for v in (1, 2, 3, 4)])
    assert results == [True] * 4
    history = [int(v) for v in client.get_registered_model(NAME).tags[HISTORY_TAG][1:-1].split(",")]
    assert sorted(history) == [1, 2, 3, 4]  # every promotion recorded, none overwritten
    assert _champion(client) == history[-1]  # the alias is the last one recorded
    holders = [r.version for r in list_versions(uri, NAME) if CHAMPION in r.aliases]
    assert len(holders) == 1
