"""`fmnist promote --version N` by hand: the champion itself again is a success moving nothing,
and a version below the champion is promoted but said so; one line each, exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner, Result

from fmnist.registry.champion import HISTORY_TAG
from fmnist.registry.promotion import CHAMPION

NAME = "fashion-mnist"
pytestmark = pytest.mark.usefixtures("cli_side_effects_undone")


def _registry(uri: str, accuracies: list[float]) -> MlflowClient:
    """Versions 1.. of the model with these test accuracies (no run: nothing to train)."""
    client = MlflowClient(uri)
    client.create_registered_model(NAME)
    for accuracy in accuracies:
        tags = {"test_accuracy": f"{accuracy:.4f}", "optimizer": "sgd"}
        client.create_model_version(NAME, source="file:///nowhere", tags=tags)
    return client


def _promote(tmp_path: Path, uri: str, version: int) -> Result:
    from fmnist.cli import load_commands
    from fmnist.cli.app import app

    load_commands(["promote"])
    params = tmp_path / "params.yaml"
    params.write_text("{}\n", encoding="utf-8")  # register's defaults: min_accuracy 0.80
    args = ["promote", "--version", str(version), "--params", str(params), "--tracking-uri", uri]
    return CliRunner().invoke(app, args)


def _champion(client: MlflowClient) -> int:
    return int(client.get_model_version_by_alias(NAME, CHAMPION).version)


def test_promoting_the_champion_again_says_so_and_moves_nothing(
    tmp_path: Path, tracking_uri: str
) -> None:
    client = _registry(tracking_uri, [0.8619, 0.8378])
    assert _promote(tmp_path, tracking_uri, 1).exit_code == 0
    before = client.get_registered_model(NAME).tags, client.get_model_version(NAME, "1").tags
    result = _promote(tmp_path, tracking_uri, 1)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{NAME} v1 is already @champion: nothing to move"]
    assert result.stderr == ""
    assert _champion(client) == 1
    after = client.get_registered_model(NAME).tags, client.get_model_version(NAME, "1").tags
    assert after == before  # no decision recorded again, history as it was
    assert after[0][HISTORY_TAG] == "[1]"


def test_promoting_a_worse_version_by_hand_says_so_in_one_line(
    tmp_path: Path, tracking_uri: str
) -> None:
    client = _registry(tracking_uri, [0.8619, 0.8378, 0.8700])
    first = _promote(tmp_path, tracking_uri, 1)
    assert first.stdout.splitlines() == [
        f"{NAME} v1 is now @champion (promoted by hand (test_accuracy 0.8619))"
    ]
    worse = _promote(tmp_path, tracking_uri, 2)
    assert worse.exit_code == 0, worse.output
    assert worse.stdout.splitlines() == [
        f"{NAME} v2 has test_accuracy 0.8378, below champion v1's 0.8619: "
        "promoting it by hand anyway",
        f"{NAME} v2 is now @champion (promoted by hand (test_accuracy 0.8378))",
    ]
    assert _champion(client) == 2
    better = _promote(tmp_path, tracking_uri, 3)  # above the champion: nothing to say
    assert better.stdout.splitlines() == [
        f"{NAME} v3 is now @champion (promoted by hand (test_accuracy 0.8700))"
    ]
