from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.process.errors import TrackingError
from fmnist.registry.champion import HISTORY_TAG, promote, promotion_lock, rollback
from fmnist.registry.promotion import CHAMPION, Decision, decide_promotion
from fmnist.registry.versions import list_versions

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


def test_rollback_skips_deleted_versions(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.85, 0.86, 0.87])
    for version in (1, 2, 3):
        promote(tracking_uri, NAME, version, **RULE, require_better=True)
    client.delete_model_version(NAME, "2")
    assert rollback(tracking_uri, NAME) == (3, 1)
    assert _champion(client) == 1


def test_the_champion_again_is_a_success_that_moves_nothing(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.8619, 0.87])
    first = promote(tracking_uri, NAME, 1, **RULE, require_better=True)
    assert first.promote and not first.already_champion
    assert promote(tracking_uri, NAME, 1, **RULE, require_better=False) == Decision(
        True, "v1 is already champion", 1, 0.8619, already_champion=True
    )
    assert client.get_registered_model(NAME).tags[HISTORY_TAG] == "[1]"  # nothing recorded
    second = promote(tracking_uri, NAME, 2, **RULE, require_better=True)
    assert second.promote and not second.already_champion


def test_failed_promotion_leaves_aliases_as_they_were(tracking_uri: str) -> None:
    client = _versions(tracking_uri, [0.85, 0.50])
    promote(tracking_uri, NAME, 1, **RULE, require_better=True)
    with pytest.raises(TrackingError, match="no version 9"):
        promote(tracking_uri, NAME, 9, **RULE, require_better=False)
    assert not promote(tracking_uri, NAME, 2, **RULE, require_better=False).promote
    assert _champion(client) == 1
    assert client.get_registered_model(NAME).tags[HISTORY_TAG] == "[1]"
    with promotion_lock(client, NAME, timeout=1):  # released: free at once
        pass


def _promote_in_process(uri: str, version: int) -> bool:
    return promote(uri, NAME, version, **RULE, require_better=False).promote


@pytest.mark.slow  # processes racing, seconds of waiting
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


# --- registering: per run, all or nothing, read back ------------------------------------------


def _logged_run(uri: str, status: str = "FINISHED") -> tuple[str, str]:
    """A real run with a logged model (MLflow 3's LoggedModel, as train logs one); returns
    (run_id, model_uri) as models/trained.json records them."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name("registry")
    experiment = found.experiment_id if found else client.create_experiment("registry")
    run_id = client.create_run(experiment).info.run_id
    model = mlflow.initialize_logged_model(
        name="model", source_run_id=run_id, experiment_id=experiment
    )
    mlflow.finalize_logged_model(model.model_id, "READY")
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id, f"models:/{model.model_id}"


def _register(uri: str, run_id: str, model_uri: str) -> tuple[int, str]:
    from fmnist.registry.versions import register_version

    registration = register_version(
        uri, NAME, model_uri, run_id, description="d", tags={"test_accuracy": "0.9000"}
    )
    return int(registration.version.version), registration.state


def test_a_runs_version_is_taken_up_until_complete_then_returned_as_it_is(
    tracking_uri: str,
) -> None:
    from fmnist.registry.versions import COMPLETE, NEW, RESUMED, registered_record

    run_id, model_uri = _logged_run(tracking_uri)
    assert _register(tracking_uri, run_id, model_uri) == (1, NEW)
    assert _register(tracking_uri, run_id, model_uri) == (1, RESUMED)  # no decision, no card
    other, other_uri = _logged_run(tracking_uri)
    assert _register(tracking_uri, other, other_uri) == (2, NEW)
    client = MlflowClient(tracking_uri)  # v1 as the register stage completes it
    client.set_model_version_tag(NAME, "1", "fmnist.promotion.reason", "below min_accuracy")
    client.update_model_version(NAME, "1", description="**not promoted**: below min_accuracy")
    assert _register(tracking_uri, run_id, model_uri) == (1, COMPLETE)
    assert [r.version for r in list_versions(tracking_uri, NAME)] == [2, 1]
    assert registered_record(tracking_uri, NAME, 1)["aliases"] == []  # as it was: not moved
    assert registered_record(tracking_uri, NAME, 2)["aliases"] == ["challenger"]
    assert client.get_model_version(NAME, "1").description.startswith("**not promoted**")


def test_a_version_whose_run_did_not_finish_is_refused_unless_forced(tracking_uri: str) -> None:
    for status in ("RUNNING", "KILLED", "FAILED"):
        run_id, model_uri = _logged_run(tracking_uri, status)
        version, _ = _register(tracking_uri, run_id, model_uri)
        decision = promote(tracking_uri, NAME, version, **RULE, require_better=True)
        assert not decision.promote
        assert decision.reason == f"its run {run_id} is {status}, not FINISHED (--force to promote)"
    assert promote(tracking_uri, NAME, version, **RULE, require_better=False, force=True).promote


def test_undoing_a_registration_gives_challenger_back(tracking_uri: str) -> None:
    from fmnist.registry.versions import NEW, register_version, undo_registration

    first, first_uri = _logged_run(tracking_uri)
    _register(tracking_uri, first, first_uri)
    second, second_uri = _logged_run(tracking_uri)
    registration = register_version(
        tracking_uri, NAME, second_uri, second, description="d", tags={}
    )
    assert registration.state == NEW and int(registration.challenger_before.version) == 1
    version = int(registration.version.version)
    left = undo_registration(tracking_uri, NAME, version, registration.challenger_before)
    assert left == f"{NAME} v2 was deleted: the registry is as it was before"
    client = MlflowClient(tracking_uri)
    assert [int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == [1]
    assert int(client.get_model_version_by_alias(NAME, "challenger").version) == 1


def test_an_undo_leaves_challenger_to_a_registration_made_since(tracking_uri: str) -> None:
    """v2's registration is undone after v3 took `challenger` (it waited for the lock while
    v3 registered): v3 keeps it."""
    from fmnist.registry.versions import register_version, undo_registration

    first, first_uri = _logged_run(tracking_uri)
    _register(tracking_uri, first, first_uri)
    second, second_uri = _logged_run(tracking_uri)
    undone = register_version(tracking_uri, NAME, second_uri, second, description="d", tags={})
    third, third_uri = _logged_run(tracking_uri)
    assert _register(tracking_uri, third, third_uri)[0] == 3
    left = undo_registration(tracking_uri, NAME, 2, undone.challenger_before)
    assert left == f"{NAME} v2 was deleted: the registry is as it was before"
    assert (
        int(MlflowClient(tracking_uri).get_model_version_by_alias(NAME, "challenger").version) == 3
    )


def test_an_undo_that_cannot_finish_says_what_it_left(broken_server: str) -> None:
    """The registry answers 500: the version stays, and the line says the next register
    completes it."""
    from fmnist.registry.versions import undo_registration

    left = undo_registration(broken_server, NAME, 8, None)
    assert left.startswith(f"{NAME} v8 is left half-made (MLflow at {broken_server}: API "), left
    assert left.endswith("500 error responses'))); the next `fmnist register` completes it"), left


@pytest.fixture
def broken_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking server answering 500 to everything but its health check."""
    import http.server
    import threading

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 500)
            self.end_headers()
            self.wfile.write(
                b"OK" if self.path == "/health" else b'{"error_code": "INTERNAL_ERROR"}'
            )

        do_POST = do_PATCH = do_DELETE = do_GET

        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_registry_stops_a_promotion_in_one_line(broken_server: str) -> None:
    """The promotion stops with one line naming the server (tests/integration/
    test_run_faults.py fails only the champion lookup of a real server)."""
    uri = broken_server
    with pytest.raises(TrackingError, match=rf"^MLflow at {uri}: API request to .* 500 error"):
        promote(uri, NAME, 1, **RULE, require_better=True)
