"""The DVC pipeline on the real data, driven through DVC's CLI in a temporary repo."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.model_selection import train_test_split

from fmnist_model.images import scale_images
from tests.integration.conftest import Runner, data_mirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tutorial_arrays(mirror: str) -> dict[str, np.ndarray]:
    """The tutorial's own way, read from the same files: x / 255.0 (float64), then split."""

    def read(name: str, offset: int) -> np.ndarray:
        return np.frombuffer(
            gzip.decompress(Path(mirror, name).read_bytes()), np.uint8, offset=offset
        )

    train_input = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    train_target = read("train-labels-idx1-ubyte.gz", 8)
    test_input = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    train_scaled, val_scaled, train_t, val_t = train_test_split(
        train_input / 255.0, train_target, test_size=0.2, random_state=42
    )
    return {
        "train": train_scaled,
        "val": val_scaled,
        "train_y": train_t,
        "val_y": val_t,
        "test": test_input / 255.0,
    }


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def test_prepare_matches_the_tutorial(repo: Path, dvc: Runner) -> None:
    result = dvc("dvc", "repro", "prepare")
    assert ran_stages(result.stdout) == ["download", "prepare"]
    expected = tutorial_arrays(data_mirror())
    for split, n in (("train", 48000), ("val", 12000), ("test", 10000)):
        with np.load(repo / "data/prepared" / f"{split}.npz") as data:
            x, y = data["x"], data["y"]
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8 and y.dtype == np.uint8
        # raw pixels; what the model's input step makes of them is the tutorial's x / 255
        assert np.array_equal(scale_images(x), expected[split].astype(np.float32))
        if split != "test":
            assert np.array_equal(y, expected[f"{split}_y"])
    # a second repro has nothing to do
    again = dvc("dvc", "repro", "prepare")
    assert ran_stages(again.stdout) == []
    # changing val_size re-runs prepare only
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["val_size"] = 0.25
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    assert ran_stages(dvc("dvc", "repro", "prepare").stdout) == ["prepare"]
    with np.load(repo / "data/prepared/val.npz") as data:
        assert data["y"].shape == (15000,)


def test_push_pull_round_trip(repo: Path, dvc: Runner, tmp_path: Path) -> None:
    dvc("dvc", "repro", "download")
    remote = tmp_path / "remote"
    dvc("dvc", "remote", "add", "-d", "local", str(remote))
    dvc("dvc", "push")
    before = {p.name: p.read_bytes() for p in (repo / "data/raw").iterdir()}
    for path in (repo / "data/raw").iterdir():
        path.unlink()
    (repo / "data/raw").rmdir()
    import shutil

    shutil.rmtree(repo / ".dvc/cache")
    dvc("dvc", "pull", "download")
    assert {p.name: p.read_bytes() for p in (repo / "data/raw").iterdir()} == before


def test_full_pipeline(repo: Path, dvc: Runner) -> None:
    """download -> prepare -> train -> evaluate -> register with the tutorial's settings."""
    first = dvc("dvc", "repro")
    assert ran_stages(first.stdout) == ["download", "prepare", "train", "evaluate", "register"]
    train = json.loads((repo / "metrics/train.json").read_text())
    assert train["accuracy"] >= 0.87 and train["val_accuracy"] >= 0.86  # the tutorial: 0.8788
    test = json.loads((repo / "metrics/evaluate.json").read_text())
    assert test["test_accuracy"] >= 0.84

    assert ran_stages(dvc("dvc", "repro").stdout) == []

    # The run's data tag is the hash DVC itself recorded for data/prepared.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    prepared_md5 = next(
        o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared"
    )
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    run_id = json.loads((repo / "models/trained.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.data.tags["fmnist.data.prepared"] == prepared_md5
    assert run.data.tags["fmnist.git.commit"] == dvc("git", "rev-parse", "HEAD").stdout.strip()
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4, 5]
    assert run.data.params["model.name"] == "패션 MNIST 모델"
    version = client.get_model_version_by_alias("fashion-mnist", "challenger")
    assert version.run_id == run_id and "79,510" in version.description
    assert "패션 MNIST 모델" in version.description

    dvc("git", "add", "-A")
    dvc("git", "commit", "-q", "-m", "first run")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    assert ran_stages(dvc("dvc", "repro").stdout) == ["train", "evaluate", "register"]
    latest = client.get_model_version_by_alias("fashion-mnist", "challenger")
    assert int(latest.version) == int(version.version) + 1

    diff = dvc("dvc", "metrics", "diff", "--json").stdout
    assert "test_accuracy" in json.loads(diff)["metrics/evaluate.json"]
    plots = dvc("dvc", "plots", "show", "--json").stdout
    assert "train_history.csv" in plots and "confusion" in plots


def changed_stages(dvc: Runner) -> dict[str, set[str]]:
    """`dvc status --json`: stage -> its changed deps, for each stage that is not up to date."""
    status = json.loads(dvc("dvc", "status", "--json").stdout or "{}")
    return {
        stage: {path for item in changes for path in item.get("changed deps", {})}
        for stage, changes in status.items()
    }


def test_status_follows_the_code_not_the_experiment_name(repo: Path, dvc: Runner) -> None:
    """The deps are the code that shapes each stage's outputs (tests/test_dvc_deps.py holds the
    rule): editing it makes exactly the stages that compute with it stale; editing plumbing, or
    renaming the MLflow experiment, none."""
    every_stage = ("download", "prepare", "train", "evaluate", "register")
    assert tuple(ran_stages(dvc("dvc", "repro").stdout)) == every_stage
    assert changed_stages(dvc) == {}

    params = repo / "params.yaml"
    text = params.read_text(encoding="utf-8")
    assert "\n  experiment: fashion-mnist\n" in text
    params.write_text(text.replace("experiment: fashion-mnist", "experiment: renamed"), "utf-8")
    assert changed_stages(dvc) == {}  # not a DVC param: renaming it never retrains

    shipped = ("prepare", "train", "evaluate", "register")  # all compute with the model's code
    for module, dep, stages in (
        # plumbing: what commands print, their errors, the store, the CLI
        ("src/fmnist/process/console.py", "", ()),
        ("src/fmnist/process/errors.py", "", ()),
        ("src/fmnist/tracking/mlflow_store.py", "", ()),
        ("src/fmnist/cli/stages.py", "", ()),
        ("src/fmnist/cli/app.py", "", ()),
        # the training loop: train's
        ("src/fmnist/training/fit.py", "src/fmnist/training/fit.py", ("train",)),
        # the served model's code, which train ships whole: one folder dep
        ("src/fmnist_model/pyfunc.py", "src/fmnist_model", shipped),
        # ... its model_code.py too, which only MLflow runs (by path)
        ("src/fmnist_model/model_code.py", "src/fmnist_model", shipped),
    ):
        source = repo / module
        original = source.read_text(encoding="utf-8")
        source.write_text(original + "# a comment changes the file's hash\n", encoding="utf-8")
        changed = changed_stages(dvc)
        source.write_text(original, encoding="utf-8")
        assert changed == {stage: {dep} for stage in stages}, module
    assert changed_stages(dvc) == {}
