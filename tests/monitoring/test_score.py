"""Batch scoring with a registered version: predictions file, scoring run, dataset lineage;
bad input starts no run and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmnist.monitoring.batch import read_batch, report_lines, run
from fmnist.monitoring.drift_check import reference
from fmnist.params.config import parse_params
from fmnist.process.errors import DataIntegrityError, TrackingError
from fmnist.serving.loading import load_champion
from tests.scoring_helpers import MODEL_NAME, Champion, register_champion

pytestmark = pytest.mark.slow  # Keras + MLflow: a small model trained and registered


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    return register_champion(tmp_path_factory.mktemp("champion"))


def _runs(uri: str) -> list:  # type: ignore[type-arg]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("fashion-mnist-batch-score")
    return [] if found is None else client.search_runs([found.experiment_id])


def test_a_batch_scored_by_the_champion(tmp_path: Path, champion: Champion) -> None:
    params = parse_params({"score": {"batch_size": 7}})  # several prediction calls
    np.savez(tmp_path / "batch.npz", x=champion.pixels[:20].reshape(20, 784))
    batch = read_batch(tmp_path / "batch.npz")
    scorer = load_champion(champion.tracking_uri, MODEL_NAME, None)
    scored, proba = run(params, batch, scorer, tmp_path / "out.csv", champion.tracking_uri)
    assert scored.version == scorer.version == 1 and scored.rows == 20 == len(proba)
    expected = scorer.model.predict(champion.pixels[:20])
    assert np.allclose(proba, expected.iloc[:, 2:].to_numpy(), atol=1e-6)  # chunked == whole
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["input", "class_id", "label", "T-shirt/top"]
    assert lines[1].startswith(f"batch.npz#0,{expected['class_id'][0]},{expected['label'][0]},")
    assert sum(scored.counts.values()) == 20
    (found,) = _runs(champion.tracking_uri)
    assert found.info.status == "FINISHED" and found.info.run_id == scored.run_id
    assert found.data.params["model_version"] == "1" and found.data.params["input_kind"] == "npz"
    assert found.data.tags["fmnist.input_digest"] == batch.digest
    assert found.data.metrics["rows"] == 20
    assert found.data.metrics["mean_confidence"] == pytest.approx(scored.mean_confidence)
    (dataset,) = found.inputs.dataset_inputs
    assert dataset.dataset.digest == batch.digest and "batch.npz" in dataset.dataset.source
    assert "v1:" in report_lines(scored, "x")[0]


def test_what_cannot_be_scored_starts_no_run_and_writes_nothing(
    tmp_path: Path, champion: Champion
) -> None:
    before = len(_runs(champion.tracking_uri))
    with pytest.raises(TrackingError, match=rf"^models:/{MODEL_NAME}/9: .*version=9\) not found"):
        load_champion(champion.tracking_uri, MODEL_NAME, 9)
    with pytest.raises(TrackingError, match=r"^models:/nomodel/9: .*version=9\) not found"):
        load_champion(champion.tracking_uri, "nomodel", 9)  # the version named, not the model
    np.savez(tmp_path / "good.npz", x=champion.pixels[:3])
    scorer = load_champion(champion.tracking_uri, MODEL_NAME, 1)
    with pytest.raises(DataIntegrityError, match="out.txt: the predictions file must be a .csv"):
        run(parse_params({}), read_batch(tmp_path / "good.npz"), scorer, tmp_path / "out.txt",
            champion.tracking_uri)  # fmt: skip
    with pytest.raises(DataIntegrityError, match="unversioned data"):  # the drift reference
        reference(parse_params({}), tmp_path, scorer)
    assert len(_runs(champion.tracking_uri)) == before and not list(tmp_path.glob("out.*"))
