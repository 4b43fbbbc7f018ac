"""train -> evaluate -> register on synthetic data, against a real (temporary) sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from fmnist.config import Params
from fmnist.errors import DataIntegrityError, TrackingError
from fmnist.evaluate import CLASS_NAMES
from fmnist.stages import (
    EvaluateOutputs,
    TrainOutputs,
    data_hash,
    load_split,
    run_evaluate,
    run_prepare,
    run_register,
    run_train,
    save_split,
)

pytestmark = pytest.mark.slow


def train_outputs(root: Path) -> TrainOutputs:
    return TrainOutputs(
        model=root / "models/model.keras",
        summary=root / "models/summary.txt",
        run=root / "models/run.json",
        history=root / "plots/train_history.csv",
        metrics=root / "metrics/train.json",
    )


def evaluate_outputs(root: Path) -> EvaluateOutputs:
    return EvaluateOutputs(
        root / "metrics/evaluate.json",
        root / "metrics/classes.json",
        root / "plots/confusion.csv",
        root / "plots/confusion.png",
    )


def test_prepare_writes_the_three_splits(prepared_dir: Path, raw_arrays: dict) -> None:
    x_train, y_train = load_split(prepared_dir / "train.npz")
    x_val, _ = load_split(prepared_dir / "val.npz")
    x_test, y_test = load_split(prepared_dir / "test.npz")
    assert (x_train.shape[0], x_val.shape[0], x_test.shape[0]) == (240, 60, 100)
    assert x_train.dtype == np.float32 and y_train.dtype == np.uint8
    assert np.array_equal(y_test, raw_arrays["test"][1])
    assert sorted(p.name for p in prepared_dir.iterdir()) == ["test.npz", "train.npz", "val.npz"]


def test_pipeline_tracks_and_registers(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    out = train_outputs(tmp_path)
    last = run_train(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    run_id = json.loads(out.run.read_text())["run_id"]
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "패션 MNIST 모델"
    assert run.data.params["train.optimizer"] == "rmsprop"
    assert run.data.tags["fmnist.data.prepared"] == data_hash(prepared_dir)
    assert run.data.tags["fmnist.data.prepared"].endswith(".dir")
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

    headline = run_evaluate(
        tiny_params, out.model, prepared_dir, out.run, evaluate_outputs(tmp_path), tracking_uri
    )
    assert set(headline) == {"test_loss", "test_accuracy"}
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] == pytest.approx(headline["test_accuracy"])
    assert "test_f1_ankle_boot" in run.data.metrics
    assert (tmp_path / "plots/confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "plots/confusion.csv").read_text().splitlines()) == 101

    record = run_register(
        tiny_params, out.run, tmp_path / "metrics/evaluate.json", out.summary,
        tmp_path / "models/registered.json", tracking_uri,
    )  # fmt: skip
    version = client.get_model_version_by_alias("fashion-mnist", "challenger")
    assert int(version.version) == record["version"] == 1
    assert version.run_id == run_id
    assert "패션 MNIST 모델" in version.description and "79,510" not in version.description
    assert "test_accuracy" in version.description and "hidden (Dense)" in version.description
    assert version.tags["run_id"] == run_id and version.tags["optimizer"] == "rmsprop"
    assert version.tags["data.prepared"] == data_hash(prepared_dir)
    assert "git.commit" in version.tags

    # The registered model is the served pyfunc: raw 0-255 pixels in, the saved model's
    # probabilities out (the scaling happens inside it).
    import keras
    import mlflow

    loaded = mlflow.pyfunc.load_model("models:/fashion-mnist@challenger")
    x, _ = load_split(prepared_dir / "test.npz")  # (n, 28, 28) float32 in [0, 1]
    table = loaded.predict(np.rint(x * 255).reshape(-1, 784).astype(np.float64))
    saved = keras.models.load_model(out.model)
    expected = saved.predict(x.reshape(-1, 784), verbose=0)
    assert np.allclose(table[list(CLASS_NAMES)].to_numpy(), expected, atol=1e-6)
    assert list(table["class_id"]) == list(expected.argmax(axis=1))
    as_images = loaded.predict(np.rint(x * 255).reshape(-1, 28, 28).astype(np.uint8))
    assert as_images.equals(table)  # 28x28 arrays and 784-value rows alike
    assert loaded.metadata.get_input_schema() is None  # both forms: the model checks them
    assert list(loaded.metadata.get_output_schema().input_names()) == list(table.columns)
    assert "(n, 28, 28)" in " ".join(loaded.metadata.metadata["input_forms"])


def test_same_seed_same_run(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    a = run_train(tiny_params, prepared_dir, train_outputs(tmp_path / "a"), tracking_uri, tmp_path)
    b = run_train(tiny_params, prepared_dir, train_outputs(tmp_path / "b"), tracking_uri, tmp_path)
    assert a == b


def test_a_split_read_as_pixels_is_what_prepare_scaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in chunks (here of 3 rows) and unscaled: the uint8 pixels, bit for bit; the float32
    read of the same file is np.load's."""
    import fmnist.stages
    from fmnist.data.prepare import scale_images
    from tests.conftest import synthetic_images

    monkeypatch.setattr(fmnist.stages, "_CHUNK_ROWS", 3)
    pixels, labels = synthetic_images(10, seed=4)
    save_split(tmp_path / "s.npz", scale_images(pixels), labels)
    x, y = load_split(tmp_path / "s.npz", as_pixels=True)
    assert x.dtype == np.uint8 and np.array_equal(x, pixels) and np.array_equal(y, labels)
    x, y = load_split(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as stored:
        assert np.array_equal(x, stored["x"]) and x.dtype == np.float32


def test_a_split_that_is_not_pixels_over_255_is_refused_as_pixels(tmp_path: Path) -> None:
    x = np.full((4, 28, 28), 0.5, np.float32)  # 127.5 / 255: no pixel
    save_split(tmp_path / "s.npz", x, np.zeros(4, np.uint8))
    with pytest.raises(DataIntegrityError, match=r"s.npz: x rows 0-4: values are not 0-255"):
        load_split(tmp_path / "s.npz", as_pixels=True)
    assert load_split(tmp_path / "s.npz")[0].shape == (4, 28, 28)  # as float32 it is fine


def test_a_truncated_split_is_one_error(tmp_path: Path) -> None:
    import zipfile

    save_split(tmp_path / "s.npz", np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8))
    with zipfile.ZipFile(tmp_path / "s.npz") as archive:
        x_npy = archive.read("x.npy")
        y_npy = archive.read("y.npy")
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as archive:
        archive.writestr("x.npy", x_npy[:-100])
        archive.writestr("y.npy", y_npy)
    with pytest.raises(DataIntegrityError, match="cut.npz: x is truncated at row 0"):
        load_split(tmp_path / "cut.npz", as_pixels=True)


def test_missing_prepared_data_starts_no_run(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    with pytest.raises(DataIntegrityError, match="train.npz: missing"):
        run_train(
            tiny_params, tmp_path / "nowhere", train_outputs(tmp_path), tracking_uri, tmp_path
        )
    assert MlflowClient(tracking_uri).search_runs(experiment_ids=["0"]) == []


def test_mismatched_prepared_data(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    save_split(prepared_dir / "val.npz", np.zeros((5, 28, 28), np.float32), np.zeros(4, np.uint8))
    with pytest.raises(
        DataIntegrityError, match=r"val.npz: y is uint8 \(4,\), expected uint8 \(5,\)"
    ):
        run_train(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)
    save_split(prepared_dir / "val.npz", np.zeros((5, 28, 28), np.float64), np.zeros(5, np.uint8))
    with pytest.raises(DataIntegrityError, match="expected float32"):
        run_train(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)
    (prepared_dir / "val.npz").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError, match="not a prepared split"):
        run_train(tiny_params, prepared_dir, train_outputs(tmp_path), tracking_uri, tmp_path)


def test_failure_inside_a_run_ends_it_failed(
    tmp_path: Path,
    prepared_dir: Path,
    tiny_params: Params,
    tracking_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash mid-training leaves the run FAILED (never RUNNING) and no model file."""
    import fmnist.train

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fmnist.train, "fit_model", explode)
    out = train_outputs(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        run_train(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("fashion-mnist")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not out.model.exists() and not out.run.exists()


def test_evaluate_of_a_missing_model_leaves_the_run_alone(
    tmp_path: Path, prepared_dir: Path, tiny_params: Params, tracking_uri: str
) -> None:
    out = train_outputs(tmp_path)
    run_train(tiny_params, prepared_dir, out, tracking_uri, tmp_path)
    out.model.unlink()
    with pytest.raises(DataIntegrityError, match="model.keras: missing"):
        run_evaluate(
            tiny_params, out.model, prepared_dir, out.run, evaluate_outputs(tmp_path), tracking_uri
        )
    run_id = json.loads(out.run.read_text())["run_id"]
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FINISHED"


def test_register_with_an_unknown_model_creates_no_version(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps({
        "run_id": "0" * 32, "model_uri": "models:/m-doesnotexist", "optimizer": "adam",
        "fmnist.data.prepared": "x.dir", "fmnist.git.commit": "abc", "fmnist.model.name": "m",
    }))  # fmt: skip
    metrics = tmp_path / "evaluate.json"
    metrics.write_text('{"test_loss": 0.4, "test_accuracy": 0.85}')
    summary = tmp_path / "summary.txt"
    summary.write_text("Model: m\n")
    with pytest.raises(TrackingError):
        run_register(tiny_params, run, metrics, summary, tmp_path / "registered.json", tracking_uri)
    assert MlflowClient(tracking_uri).search_model_versions("name='fashion-mnist'") == []
    assert not (tmp_path / "registered.json").exists()


def test_prepare_rejects_bad_raw_files(tmp_path: Path, raw_dir: Path, tiny_params: Params) -> None:
    (raw_dir / "train-labels-idx1-ubyte").write_bytes(
        (raw_dir / "train-labels-idx1-ubyte").read_bytes()[:-1]
    )
    with pytest.raises(DataIntegrityError, match="truncated"):
        run_prepare(tiny_params, raw_dir, tmp_path / "prepared")
    (raw_dir / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataIntegrityError, match="missing"):
        run_prepare(tiny_params, raw_dir, tmp_path / "prepared")


def test_incomplete_run_record_is_one_clear_error(
    tmp_path: Path, tiny_params: Params, tracking_uri: str
) -> None:
    run = tmp_path / "run.json"
    run.write_text('{"run_id": "abc"}')
    with pytest.raises(DataIntegrityError, match="run.json: missing model_uri, optimizer"):
        run_register(
            tiny_params,
            run,
            tmp_path / "m.json",
            tmp_path / "s.txt",
            tmp_path / "r.json",
            tracking_uri,
        )


def test_workspace_root_sees_through_dvc_temp_experiments(tmp_path: Path) -> None:
    from fmnist.tracking import workspace_root

    temp = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12"
    temp.mkdir(parents=True)
    assert workspace_root(temp) == tmp_path.resolve()
    assert workspace_root(tmp_path) == tmp_path.resolve()


def test_an_empty_split_is_one_error(tmp_path: Path) -> None:
    save_split(tmp_path / "val.npz", np.zeros((0, 28, 28), np.float32), np.zeros(0, np.uint8))
    with pytest.raises(DataIntegrityError, match=r"val.npz: the split is empty"):
        load_split(tmp_path / "val.npz")
