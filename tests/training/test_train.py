"""The train stage (and the chain after it) on synthetic data, against a real sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from fmnist.data.splits import load_split, save_split
from fmnist.params.config import Params
from fmnist.pipeline.lineage import UNVERSIONED
from fmnist.process import layout
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import file_digest
from fmnist.registry import register as register_stage
from fmnist.training import evaluate as evaluate_stage
from fmnist.training import train as train_stage
from fmnist_model.images import CLASS_NAMES, scale_images
from tests.training.outputs import evaluate_outputs, train_outputs

pytestmark = pytest.mark.slow


def test_pipeline_tracks_and_registers(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    out = train_outputs(tmp_path)
    last = train_stage.run(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    run_id = json.loads(out.trained.read_text())["run_id"]
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "패션 MNIST 모델"
    assert run.data.params["train.optimizer"] == "rmsprop"
    assert run.data.tags["fmnist.data.prepared"] == UNVERSIONED  # no dvc.lock here
    history = client.get_metric_history(run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(last["val_accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "model_summary.txt" in artifacts
    summary = Path(
        client.download_artifacts(run_id, "model_summary.txt", str(tmp_path))
    ).read_text()
    assert summary == out.summary.read_text() and "패션 MNIST 모델" in summary
    assert out.history.read_text().splitlines()[0] == "epoch,loss,accuracy,val_loss,val_accuracy"
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}  # logged while it ran
    assert sorted(inputs) == ["fashion-mnist-train", "fashion-mnist-val"]
    assert inputs["fashion-mnist-train"].dataset.digest == file_digest(prepared_dir / "train.npz")
    assert json.loads(inputs["fashion-mnist-val"].dataset.profile) == {"num_rows": 60}

    headline = evaluate_stage.run(
        tiny_params, out.model, prepared_dir, out.trained, evaluate_outputs(tmp_path), tracking_uri
    )
    assert set(headline) == {"test_loss", "test_accuracy"}
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] == pytest.approx(headline["test_accuracy"])
    assert "test_f1_ankle_boot" in run.data.metrics
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        "fashion-mnist-train", "fashion-mnist-val", "fashion-mnist-test",
    }  # fmt: skip
    assert [a.path for a in client.list_artifacts(run_id, "training")] == [layout.CURVES_ARTIFACT]
    assert (tmp_path / "plots/confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "plots/confusion.csv").read_text().splitlines()) == 101

    record = register_stage.run(
        tiny_params, out.trained, tmp_path / "metrics/evaluate.json", out.summary,
        tmp_path / "models/registered.json", tracking_uri,
    )  # fmt: skip
    version = client.get_model_version_by_alias("fashion-mnist", "challenger")
    assert int(version.version) == record["version"] == 1
    assert version.run_id == run_id
    assert "패션 MNIST 모델" in version.description and "79,510" not in version.description
    assert "test_accuracy" in version.description and "hidden (Dense)" in version.description
    assert "### Intended use" in version.description  # the model card
    assert "**promoted to `champion`**: no champion yet" in version.description
    assert version.tags["run_id"] == run_id and version.tags["optimizer"] == "rmsprop"
    assert version.tags["data.prepared"] == UNVERSIONED
    assert "git.commit" in version.tags

    # The registered model is the served pyfunc: raw 0-255 pixels in, the saved model's
    # probabilities out (the scaling happens inside it).
    import keras
    import mlflow

    loaded = mlflow.pyfunc.load_model("models:/fashion-mnist@challenger")
    pixels, _ = load_split(prepared_dir / "test.npz")  # (n, 28, 28) uint8
    table = loaded.predict(pixels.reshape(-1, 784).astype(np.float64))
    saved = keras.models.load_model(out.model)
    expected = saved.predict(scale_images(pixels).reshape(-1, 784), verbose=0)
    assert np.allclose(table[list(CLASS_NAMES)].to_numpy(), expected, atol=1e-6)
    assert list(table["class_id"]) == list(expected.argmax(axis=1))
    as_images = loaded.predict(pixels)
    assert as_images.equals(table)  # 28x28 arrays and 784-value rows alike
    assert loaded.metadata.get_input_schema() is None  # both forms: the model checks them
    assert list(loaded.metadata.get_output_schema().input_names()) == list(table.columns)
    assert "(n, 28, 28)" in " ".join(loaded.metadata.metadata["input_forms"])


def test_same_seed_same_run(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    a = train_stage.run(
        tiny_params, prepared_dir, train_outputs(tmp_path / "a"), tracking_uri, tmp_path
    )
    b = train_stage.run(
        tiny_params, prepared_dir, train_outputs(tmp_path / "b"), tracking_uri, tmp_path
    )
    assert a == b


def test_missing_prepared_data_starts_no_run(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    with pytest.raises(DataIntegrityError, match="train.npz: missing"):
        train_stage.run(
            tiny_params, tmp_path / "nowhere", train_outputs(tmp_path), tracking_uri, tmp_path
        )
    assert MlflowClient(tracking_uri).search_runs(experiment_ids=["0"]) == []


def test_mismatched_prepared_data(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    save_split(prepared_dir / "val.npz", np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(
        DataIntegrityError, match=r"val.npz: y is uint8 \(4,\), expected uint8 \(5,\)"
    ):
        train_stage.run(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)
    save_split(prepared_dir / "val.npz", np.zeros((5, 28, 28), np.float32), np.zeros(5, np.uint8))
    with pytest.raises(DataIntegrityError, match="expected uint8"):
        train_stage.run(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)
    (prepared_dir / "val.npz").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError, match="not a prepared split"):
        train_stage.run(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)


def test_failure_inside_a_run_ends_it_failed(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash mid-training leaves the run FAILED (never RUNNING) and no model file."""
    import fmnist.training.fit

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fmnist.training.fit, "fit_model", explode)
    out = train_outputs(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        train_stage.run(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("fashion-mnist")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not out.model.exists() and not out.trained.exists()
