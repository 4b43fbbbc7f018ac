"""A registration is complete or gone: a version a stopped (or killed) register left half
made is completed by the next one; a signal during its writes waits for them (a second one
stops at once, and the next register completes what it left)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from fmnist.params.config import Params
from fmnist.process.failures import Interrupted
from fmnist.registry.card import PENDING
from tests.registry.test_register_card import register, trained_run

pytestmark = pytest.mark.slow  # several runs and versions in a real store
NAME = "fashion-mnist"


def _row(uri: str, trained: dict[str, Any], params: Params) -> None:
    """The version as mlflow.register_model leaves it: its row and tags, nothing else."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.register_model(trained["model_uri"], NAME, tags={"test_accuracy": "0.9000"})


def _challenger(uri: str, trained: dict[str, Any], params: Params) -> None:
    """Card pending and `challenger` set: stopped before the promotion rule."""
    from fmnist.registry.versions import register_version

    register_version(uri, NAME, trained["model_uri"], trained["run_id"], description=PENDING,
                     tags={"test_accuracy": f"{trained['test_accuracy']:.4f}"})  # fmt: skip


def _decided(uri: str, trained: dict[str, Any], params: Params) -> None:
    """The rule applied (decision recorded, `champion` moved), the card still pending."""
    from fmnist.registry.champion import promote

    _challenger(uri, trained, params)
    promote(uri, NAME, 1, min_accuracy=0.8, min_delta=0.001, require_better=True)


@pytest.mark.parametrize("left", [_row, _challenger, _decided], ids=lambda f: f.__name__)
def test_a_half_made_version_is_completed(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    left: Callable[[str, dict[str, Any], Params], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    trained = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=10)
    left(tracking_uri, trained, tiny_params)
    record = register(tiny_params, trained, tracking_uri)
    version = MlflowClient(tracking_uri).get_model_version(NAME, "1")
    assert "**promoted to `champion`**: no champion yet" in str(version.description)
    assert version.tags["fmnist.promotion.promoted"] == "true"
    assert record["version"] == 1 and record["aliases"] == ["challenger", "champion"]
    assert record["promotion"] == "no champion yet (test_accuracy 0.9000)"
    assert "fmnist: completing fashion-mnist v1, left half-made" in capsys.readouterr().out
    assert register(tiny_params, trained, tracking_uri) == record  # complete: as it is
    assert "completing" not in capsys.readouterr().out


def _signalled_card(monkeypatch: pytest.MonkeyPatch, signals: int) -> None:
    """Ctrl-C, `signals` times, just as the version's card is written (after the rule)."""
    import fmnist.registry.versions

    describe = fmnist.registry.versions.describe_version

    def describe_interrupted(*args: Any) -> None:
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, handled between these lines
        describe(*args)

    monkeypatch.setattr(fmnist.registry.versions, "describe_version", describe_interrupted)


def test_a_signal_during_the_writes_waits_for_the_whole_registration(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    trained = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=10)
    _signalled_card(monkeypatch, signals=1)
    out = tmp_path / "registered.json"
    reported: list[dict[str, Any]] = []
    with pytest.raises(KeyboardInterrupt) as raised:
        register(tiny_params, trained, tracking_uri, out, reported.append)
    assert raised.value.__notes__ == [
        "fashion-mnist v1 was registered in full before stopping (@challenger @champion; "
        "promotion: no champion yet (test_accuracy 0.9000))"
    ]
    assert reported == []  # not said as a success: the command says it was interrupted
    assert '"version": 1' in out.read_text()
    assert capfd.readouterr().err.endswith(
        "fmnist: stopping once the registration of fashion-mnist v1 is finished or undone "
        "(a second signal stops at once)\n"
    )
    card = str(MlflowClient(tracking_uri).get_model_version(NAME, "1").description)
    assert PENDING not in card and "**promoted to `champion`**" in card


def test_a_second_signal_stops_at_once_and_the_next_register_completes(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trained = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=10)
    _signalled_card(monkeypatch, signals=2)
    with pytest.raises(KeyboardInterrupt) as raised:
        register(tiny_params, trained, tracking_uri)
    assert isinstance(raised.value, Interrupted) and raised.value.at_once
    assert raised.value.__notes__ == [
        "stopped at once: the registration of fashion-mnist v1 may be left half-made; "
        "the next `fmnist register` completes it"
    ]
    client = MlflowClient(tracking_uri)
    assert PENDING in str(client.get_model_version(NAME, "1").description)  # before the card
    monkeypatch.undo()
    assert register(tiny_params, trained, tracking_uri)["version"] == 1
    assert PENDING not in str(client.get_model_version(NAME, "1").description)
