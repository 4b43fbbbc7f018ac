"""Shared fixtures: tiny synthetic Fashion-MNIST in IDX form, params, a temporary MLflow store."""

from __future__ import annotations

import gc
import gzip
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fmnist.params.config import Params, parse_params
from fmnist.process.console import QUIET_ENV

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets" / "fashion-mnist"


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images whose class shows in where the bright block sits, (n,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.uint8) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 4 + row * 12 : 12 + row * 12, 2 + col * 5 : 6 + col * 5] = 250
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """A uint8 array as IDX bytes (the inverse of fmnist.data.idx.parse_idx)."""
    assert array.dtype == np.uint8, array.dtype
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + np.ascontiguousarray(array).tobytes()


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


@pytest.fixture
def raw_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": synthetic_images(300, seed=1), "test": synthetic_images(100, seed=2)}


def write_raw(raw: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """data/raw as the download stage leaves it, holding these arrays as IDX files."""
    from fmnist.data.prepare import RAW_FILES

    raw.mkdir(parents=True, exist_ok=True)
    for split, (images_name, labels_name) in RAW_FILES.items():
        images, labels = arrays[split]
        (raw / images_name).write_bytes(encode_idx(images))
        (raw / labels_name).write_bytes(encode_idx(labels))
    return raw


@pytest.fixture
def raw_dir(tmp_path: Path, raw_arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """data/raw as the download stage leaves it, with synthetic content."""
    return write_raw(tmp_path / "raw", raw_arrays)


@pytest.fixture
def tiny_params() -> Params:
    """Params for seconds-long trainings on synthetic data."""
    return parse_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "steps_per_execution": 4, "seed": 7},
            "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
        }
    )


@pytest.fixture
def prepared_dir(tmp_path: Path, raw_dir: Path, tiny_params: Params) -> Path:
    from fmnist.data import prepare as prepare_stage

    out = tmp_path / "prepared"
    prepare_stage.run(tiny_params, raw_dir, out)
    return out


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its tables made and nothing in them: MLflow creates and
    migrates a new one in seconds, a copy of this one opens at once."""
    import contextlib

    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("empty-store")
    with contextlib.chdir(folder):  # the Default experiment's artifacts: here, never the repo
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        client.search_experiments(max_results=1)  # creates the tracking tables
        client.search_registered_models(max_results=1)  # ... and the registry's
    return folder / "mlflow.db"


@pytest.fixture
def tracking_uri(tmp_path: Path, empty_store: Path) -> str:
    """A fresh MLflow store: a real sqlite database in a temporary folder, its tables made."""
    import shutil

    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def empty_study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Optuna sqlite storage with its tables made and no study in it (copied per test)."""
    import optuna

    path = tmp_path_factory.mktemp("empty-study") / "optuna.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture
def study_root(tmp_path: Path, empty_study_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder whose study database (fmnist.tuning.study's default place) is a fresh
    sqlite file with Optuna's tables made."""
    import shutil

    from fmnist.tuning.study import DEFAULT_DB, STORAGE_ENV

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    shutil.copyfile(empty_study_db, tmp_path / DEFAULT_DB)
    return tmp_path


@pytest.fixture(autouse=True)
def _isolate_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write into the repo's store or artifact folder."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _fast_tests_import_no_tensorflow(request: pytest.FixtureRequest) -> Iterator[None]:
    """`make test-fast` (not slow) starts no TensorFlow: a test that imports it is slow."""
    loaded = "tensorflow" in sys.modules
    yield
    if not loaded and "tensorflow" in sys.modules and not request.node.get_closest_marker("slow"):
        pytest.fail("imported TensorFlow: mark the test slow (make test-fast skips those)")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collecting imports no TensorFlow: a test module importing it at its top would load it
    for `make test-fast` too, before the fixture above could tell which test needs it."""
    if "tensorflow" in sys.modules:
        raise pytest.UsageError(
            "a test module imports TensorFlow at its top: import it in a slow test"
        )
    # What collecting imported (MLflow, SQLAlchemy, Optuna, ...) lives until the end: moved to
    # the collector's permanent generation, later collections skip it (as process.imports does)
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run is over: without the collector's last passes over everything the tests loaded,
    the interpreter exits in a fraction of a second instead of seconds."""
    gc.freeze()


GIT_IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@t.invalid"]


def dvc_project(root: Path, stages: str) -> Path:
    """A real git + DVC project at root (made if missing) with this dvc.yaml `stages:` body;
    nothing committed, nothing run."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(f"stages:\n{stages}", encoding="utf-8")
    return root


def record_output(root: Path, stage: str) -> None:
    """`dvc commit` a stage's outputs as they are (into dvc.lock and the DVC cache), unrun."""
    subprocess.run([sys.executable, "-m", "dvc", "commit", "-f", "-q", stage], cwd=root, check=True)


@pytest.fixture
def cli_side_effects_undone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command sets a SIGTERM handler and environment defaults: put them back after."""
    for var in QUIET_ENV:
        monkeypatch.delenv(var, raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)
