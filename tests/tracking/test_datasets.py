"""Datasets on runs: MLflow's public entities, DVC's hashes, logged to active and ended runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from fmnist.data.splits import save_split
from fmnist.pipeline.lineage import dir_md5
from fmnist.process.errors import TrackingError
from fmnist.process.files import file_digest
from fmnist.tracking.runs import dataset_input, log_datasets, split_input, tracked_run


def test_file_digest_is_dvcs_hash_of_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "a.npz").write_bytes(b"fashion" * 1000)
    (folder / "b.npz").write_bytes(b"")
    assert file_digest(folder / "a.npz") == hashlib.md5(b"fashion" * 1000).hexdigest()
    assert file_digest(folder / "b.npz") == "d41d8cd98f00b204e9800998ecf8427e"  # md5 of b""
    # the same per-file hashes DVC's directory hash (its .dir manifest) is made of
    manifest = [{"md5": file_digest(folder / name), "relpath": name} for name in ("a.npz", "b.npz")]
    expected = hashlib.md5(json.dumps(manifest, sort_keys=True).encode()).hexdigest() + ".dir"
    assert dir_md5(folder) == expected


def test_dataset_input_is_mlflows_entity() -> None:
    given = dataset_input("fashion-mnist-train", "data/prepared/train.npz@ab.dir", "0" * 32,
                          "training", 48000)  # fmt: skip
    assert given.dataset.name == "fashion-mnist-train"
    assert given.dataset.digest == "0" * 32
    assert given.dataset.source_type == "local"
    assert json.loads(given.dataset.source) == {"uri": "data/prepared/train.npz@ab.dir"}
    assert json.loads(given.dataset.profile) == {"num_rows": 48000}
    assert [(t.key, t.value) for t in given.tags] == [(MLFLOW_DATASET_CONTEXT, "training")]
    assert MLFLOW_DATASET_CONTEXT == "mlflow.data.context"


@pytest.mark.parametrize(
    ("source", "source_type", "key"),
    [
        ("https://example.org/batch.json", "http", "url"),
        ("s3://bucket/batch.npz", "s3", "uri"),
        ("/srv/batches/2026-11-29.npz", "local", "uri"),
    ],
)
def test_a_source_is_typed_as_mlflows_ui_reads_it(source: str, source_type: str, key: str) -> None:
    given = dataset_input("scored", source, "f" * 32, "scoring", 3)
    assert given.dataset.source_type == source_type
    assert json.loads(given.dataset.source) == {key: source}


def test_datasets_logged_to_an_ended_run_leave_it_as_it_was(tracking_uri: str) -> None:
    with tracked_run(tracking_uri, "datasets") as run_id:
        log_datasets(tracking_uri, run_id, [dataset_input("d-train", "x", "1" * 32, "training", 5)])
    log_datasets(tracking_uri, run_id, [dataset_input("d-test", "y", "2" * 32, "testing", 2)])
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    logged = {
        (i.dataset.name, i.dataset.digest, next(t.value for t in i.tags))
        for i in run.inputs.dataset_inputs
    }
    assert logged == {("d-train", "1" * 32, "training"), ("d-test", "2" * 32, "testing")}


def test_a_refused_dataset_is_one_line(tracking_uri: str) -> None:
    with tracked_run(tracking_uri, "datasets") as run_id:
        pass
    too_long = dataset_input("d", "x", "a" * 64, "testing", 1)  # MLflow takes 36 characters
    with pytest.raises(TrackingError, match=rf"run {run_id}: logging datasets: .*digest"):
        log_datasets(tracking_uri, run_id, [too_long])
    with pytest.raises(TrackingError, match="logging datasets"):
        log_datasets(tracking_uri, "0" * 32, [dataset_input("d", "x", "b" * 32, "testing", 1)])


def test_a_split_is_named_by_its_dvc_path_and_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data" / "prepared"
    data.mkdir(parents=True)
    save_split(data / "val.npz", np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8))
    monkeypatch.chdir(tmp_path)
    given = split_input(data, "val", "4f7e.dir", 3)
    assert given.dataset.name == "fashion-mnist-val"
    assert given.dataset.digest == file_digest(data / "val.npz")
    assert json.loads(given.dataset.source) == {"uri": "data/prepared/val.npz@4f7e.dir"}
    assert [t.value for t in given.tags] == ["validation"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # outside the folder the stage runs in: as given
    outside = split_input(data, "val", "4f7e.dir", 3)
    assert json.loads(outside.dataset.source) == {"uri": f"{data.as_posix()}/val.npz@4f7e.dir"}
