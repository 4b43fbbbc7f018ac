"""Batch scoring through a real Prefect server and process worker, deployed from prefect.yaml:
the real test set scores without drift and starts nothing; a brightened copy of it drifts and
starts the retraining deployment. One stack for the module, stopped at its end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import Runner, copy_repo, data_mirror, local_stack, make_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYMENT = "fashion-mnist-batch-score/default"
RETRAIN = "fashion-mnist-pipeline"
SHIFT = 80  # brightness added to every pixel (clipped at 255)

FLOW_RUNS = """
import json, sys
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[sys.argv[1]])))
print(json.dumps([{"id": str(r.id), "name": r.name, "tags": r.tags,
                   "state": r.state.type.value if r.state else None} for r in runs]))
"""
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Stack:
    repo: Path
    run: Runner
    tracking_uri: str


@pytest.fixture(scope="module")
def scoring_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    repo = copy_repo(tmp_path_factory.mktemp("batch") / "repo")
    # the worker's data mirror: retraining downloads
    with local_stack(repo, {"FMNIST_DATA_MIRROR": data_mirror()}) as running:
        run = make_runner(repo, running.env)
        run("dvc", "repro")  # the champion, v1, trained on the real data
        with np.load(repo / "data/prepared/test.npz") as test:
            shifted = np.clip(test["x"].astype(np.int16) + SHIFT, 0, 255).astype(np.uint8)
        (repo / "batches").mkdir()
        np.savez(repo / "batches/brighter.npz", x=shifted)
        yield Stack(repo, run, running.env["MLFLOW_TRACKING_URI"])


def _score(stack_: Stack, batch: str) -> str:
    """A deployment run of the batch-score flow, watched to its end; its markdown artifact."""
    result = stack_.run(
        "prefect", "deployment", "run", DEPLOYMENT, "-p", f"input={batch}",
        "--watch", "--watch-timeout", "600",
    )  # fmt: skip
    assert "Completed" in result.stdout + result.stderr, result.stdout + result.stderr
    shown = stack_.run("prefect", "artifact", "inspect", "fashion-mnist-batch-score").stdout
    return shown.replace("\\n", "\n")  # the artifact's versions, newest first


def _retraining_runs(stack_: Stack) -> list[dict[str, object]]:
    out = stack_.run("python", "-c", FLOW_RUNS, RETRAIN)
    return json.loads(out.stdout)


def _scoring_runs(tracking_uri: str) -> list[object]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("fashion-mnist-batch-score")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_the_test_set_does_not_drift_and_starts_nothing(scoring_stack: Stack) -> None:
    text = _score(scoring_stack, "data/prepared/test.npz")
    newest = text[: text.find("Scored `", text.find("Scored `") + 1)]  # the first version
    print(re.findall(r"###[^\n\"]*", newest)[0])
    assert "### no drift: " in newest and "No retraining" in newest, newest
    assert _retraining_runs(scoring_stack) == []
    run = _scoring_runs(scoring_stack.tracking_uri)[-1]
    assert run.info.status == "FINISHED" and run.data.params["model_version"] == "1"
    assert run.data.metrics["rows"] == 10000 and run.data.metrics["drift_detected"] == 0.0
    evaluated = json.loads((scoring_stack.repo / "metrics/evaluate.json").read_text())
    assert run.data.metrics["accuracy"] == pytest.approx(evaluated["test_accuracy"], abs=1e-4)
    (scored,) = run.inputs.dataset_inputs
    assert scored.dataset.source and json.loads(scored.dataset.source)
    assert {t.key: t.value for t in scored.tags}["mlflow.data.context"] == "scoring"
    predictions = (scoring_stack.repo / "scores/test.npz.csv").read_text().splitlines()
    assert len(predictions) == 10001 and predictions[0].startswith(
        "input,class_id,label,T-shirt/top"
    )


def test_a_brightened_batch_drifts_and_starts_retraining(scoring_stack: Stack) -> None:
    text = _score(scoring_stack, "batches/brighter.npz")
    newest = text[: text.find("Scored `", text.find("Scored `") + 1)]  # the first version
    print(re.findall(r"###[^\n\"]*", newest)[0])
    assert "### drift: " in newest and "Retraining started" in newest, newest
    (started,) = _retraining_runs(scoring_stack)
    assert "retrain-on-drift" in started["tags"] and str(started["name"]) in text
    deadline = time.monotonic() + 600  # the retraining runs on the stack's worker
    while started["state"] not in FINAL and time.monotonic() < deadline:
        time.sleep(2)
        (started,) = _retraining_runs(scoring_stack)
    assert started["state"] == "COMPLETED", started  # a real training, registered
    from mlflow import MlflowClient

    versions = MlflowClient(scoring_stack.tracking_uri).search_model_versions(
        "name='fashion-mnist'"
    )
    assert sorted(int(v.version) for v in versions) == [1, 2]
    run = _scoring_runs(scoring_stack.tracking_uri)[-1]
    assert run.data.metrics["drift_detected"] == 1.0 and run.data.metrics["drift_share"] >= 0.5

    listed = {
        f.path
        for f in MlflowClient(scoring_stack.tracking_uri).list_artifacts(run.info.run_id, "drift")
    }
    assert listed == {"drift/drift_report.html", "drift/summary.json"}
