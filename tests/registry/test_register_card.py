"""The model card register writes as each new version's description, read from the training's
run as train and evaluate leave it (built here without TensorFlow), which register never
changes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.pipeline.lineage import dir_md5
from fmnist.process import layout
from fmnist.process.errors import TrackingError
from fmnist.process.files import file_digest, write_json
from fmnist.registry import register as register_stage
from fmnist.registry.card import PENDING
from fmnist.tracking import runs as tracking
from fmnist.tracking.runs import log_datasets, split_input
from fmnist.training.evaluate import track_evaluation
from fmnist.training.metrics import confusion_figure, evaluate_predictions

MLMODEL = "artifact_path: model\nflavors: {}\n"  # enough for the registry to take the folder


def trained_run(
    tmp_path: Path, prepared: Path, params: Params, uri: str, wrong: int
) -> dict[str, Any]:
    """A run as train and evaluate leave it (datasets, params, summary, epochs, evaluation),
    its model a stub; the test predictions get `wrong` images wrong. Returns its record."""
    version = dir_md5(prepared)
    with tracking.tracked_run(uri, params.tracking.experiment) as run_id:
        tracking.load_mlflow().log_params(tracking.params_for_tracking(params))
        inputs = [split_input(prepared, s, version, 240 if s == "train" else 60)
                  for s in ("train", "val")]  # fmt: skip
        log_datasets(uri, run_id, inputs)
        tracking.load_mlflow().log_text("Model: m\n", tracking.SUMMARY_ARTIFACT)
        for epoch in (1, 2):
            logs = {"loss": 1 / epoch, "accuracy": 0.4 * epoch}
            tracking.log_epoch(epoch, {**logs, **{f"val_{k}": v for k, v in logs.items()}})
        tracking.load_mlflow().log_text(MLMODEL, "model/MLmodel")
    _, y = load_split(prepared / "test.npz")
    predicted = np.where(np.arange(len(y)) < wrong, (y + 1) % 10, y)
    result = evaluate_predictions(y, np.eye(10)[predicted] * 0.9 + 0.01)
    png = tmp_path / f"confusion-{run_id}.png"
    confusion_figure(result.confusion).savefig(png, format="png")
    track_evaluation(uri, run_id, result, png, split_input(prepared, "test", version, len(y)))
    return {
        "run_id": run_id, "model_uri": f"runs:/{run_id}/model", "optimizer": "rmsprop",
        records.DATA_TAG: version, records.COMMIT_TAG: "abc", records.MODEL_NAME_TAG: "m",
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
    }  # fmt: skip


def register(
    params: Params,
    trained: dict[str, Any],
    uri: str,
    out: Path | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The register stage on a trained record, its metrics and summary (as files)."""
    with tempfile.TemporaryDirectory() as tmp:
        record, metrics, summary = Path(tmp, "trained.json"), Path(tmp, "m.json"), Path(tmp, "s")
        write_json(record, trained)
        write_json(metrics, {k: trained[k] for k in ("test_loss", "test_accuracy")})
        summary.write_text("Model: m\n", encoding="utf-8")
        out = out or Path(tmp, "registered.json")
        return register_stage.run(params, record, metrics, summary, out, uri, report)


def run_state(client: MlflowClient, run_id: str) -> tuple[Any, ...]:
    run = client.get_run(run_id)
    artifacts = sorted(
        a.path for d in ("", "evaluation", "training") for a in client.list_artifacts(run_id, d)
    )
    inputs = sorted(i.dataset.name for i in run.inputs.dataset_inputs)
    return run.info.status, run.info.end_time, run.data.metrics, artifacts, inputs


@pytest.mark.slow  # several runs and versions in a real store
def test_each_version_is_described_by_its_card(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    client = MlflowClient(tracking_uri)
    first = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=10)
    before = run_state(client, first["run_id"])
    record = register(tiny_params, first, tracking_uri)
    assert run_state(client, first["run_id"]) == before  # register never changes the run
    card = client.get_model_version("fashion-mnist", str(record["version"])).description
    assert PENDING not in card
    assert "**promoted to `champion`**: no champion yet (test_accuracy 0.9000)" in card
    for split in ("train", "val", "test"):
        digest = file_digest(prepared_dir / f"{split}.npz")
        assert f"| fashion-mnist-{split} |" in card and f"`{digest}`" in card
    assert f"DVC hash `{first[records.DATA_TAG]}`" in card
    assert "| T-shirt/top | " in card and "| 10 |" in card  # per class, with support
    for path in (layout.CONFUSION_ARTIFACT, layout.CURVES_ARTIFACT):
        link = f"get-artifact?path={path.replace('/', '%2F')}&run_uuid={first['run_id']}"
        assert f"]({link})" in card
    assert "| train.epochs | `2` |" in card and "prepare." not in card
    curves = client.download_artifacts(first["run_id"], layout.CURVES_ARTIFACT, str(tmp_path))
    assert Path(curves).read_bytes()[:4] == b"\x89PNG"

    worse = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=25)
    second = register(tiny_params, worse, tracking_uri)
    card = client.get_model_version("fashion-mnist", str(second["version"])).description
    assert "**not promoted**: test_accuracy 0.7500 is below min_accuracy 0.8000" in card
    again = register(tiny_params, worse, tracking_uri)  # the same run: its version, as it was
    assert again["version"] == second["version"]
    assert client.get_model_version("fashion-mnist", str(second["version"])).description == card


@pytest.mark.slow  # several runs and versions in a real store
def test_a_card_that_cannot_be_written_keeps_the_decision_and_is_completed_next_run(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule moved `champion` (its decision, not the failure's): the version and the alias
    stay, the error says the card is pending, and the next run of register completes it."""
    import fmnist.registry.versions

    register(tiny_params, trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, 30),
             tracking_uri)  # fmt: skip
    better = trained_run(tmp_path, prepared_dir, tiny_params, tracking_uri, wrong=5)
    describe = fmnist.registry.versions.describe_version

    def refuse(*args: object) -> None:
        raise TrackingError("fashion-mnist v2: describing it: read-only")

    monkeypatch.setattr(fmnist.registry.versions, "describe_version", refuse)
    with pytest.raises(TrackingError, match="read-only; its card still says pending"):
        register(tiny_params, better, tracking_uri)
    client = MlflowClient(tracking_uri)
    assert client.get_model_version_by_alias("fashion-mnist", "champion").version == 2
    assert "*pending*" in client.get_model_version("fashion-mnist", "2").description
    monkeypatch.setattr(fmnist.registry.versions, "describe_version", describe)
    assert register(tiny_params, better, tracking_uri)["version"] == 2
    card = client.get_model_version("fashion-mnist", "2").description
    assert "*pending*" not in card and "**promoted to `champion`**" in card, card


def test_a_run_that_is_gone_is_one_line(tiny_params: Params, tracking_uri: str) -> None:
    trained = {"run_id": "0" * 32, "model_uri": "runs:/x/model", "optimizer": "adam",
               records.DATA_TAG: "x.dir", records.COMMIT_TAG: "abc", records.MODEL_NAME_TAG: "m",
               "test_loss": 0.4, "test_accuracy": 0.9}  # fmt: skip
    with pytest.raises(TrackingError, match=f"run {'0' * 32}: "):
        register(tiny_params, trained, tracking_uri)
