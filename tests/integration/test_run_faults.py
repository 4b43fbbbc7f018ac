"""Faults against real processes and a real store: signals sent to real `fmnist` commands,
dead, silent and lying tracking servers, damaged and read-only stores, diverging trainings.

Each test asserts the state left behind (run states in MLflow, versions and aliases, the
files the command owns) and what the user sees (one line, a specific exit code).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.tracking.lifecycle import NOTE_TAG
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FMNIST = str(Path(sys.executable).parent / "fmnist")
TRAIN_OUTPUTS = ("model.keras", "summary.txt", "trained.json", "history.csv", "train.json")


def _params(folder: Path, **train: object) -> Path:
    lines = ["model:\n  hidden:\n    - units: 16\n      activation: relu\n      name: hidden\n"]
    settings = {"epochs": 1, "batch_size": 16, "steps_per_execution": 1, "seed": 7, **train}
    lines.append("train:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items()))
    lines.append("register:\n  min_accuracy: 0.0\n")
    path = folder / "params.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _train_command(folder: Path, prepared: Path) -> list[str]:
    out = folder / "out"
    return [
        FMNIST, "train", "--data", str(prepared), "--params", str(folder / "params.yaml"),
        "--model", str(out / "model.keras"), "--summary", str(out / "summary.txt"),
        "--trained", str(out / "trained.json"), "--history", str(out / "history.csv"),
        "--metrics", str(out / "train.json"),
    ]  # fmt: skip


def _env(uri: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, **extra}


def _placeholders(folder: Path) -> dict[str, bytes]:
    """What the outputs held before: a command that fails must leave them so."""
    out = folder / "out"
    out.mkdir(exist_ok=True)
    for name in TRAIN_OUTPUTS:
        (out / name).write_bytes(f"before {name}\n".encode())
    return {name: (out / name).read_bytes() for name in TRAIN_OUTPUTS}


# TensorFlow 2.21's C++ start-up banner (printed before absl logging starts, whatever
# TF_CPP_MIN_LOG_LEVEL says): library chatter, not the command's own output.
TF_BANNER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} )")


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not TF_BANNER.match(line)]
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    return lines[0]


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def _wait_mid_fit(uri: str, proc: subprocess.Popen[str], timeout: float = 180) -> str:
    """The id of the command's run once it has logged an epoch (so it is inside fit)."""
    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        for run in _runs(uri) if Path(uri.removeprefix("sqlite:///")).exists() else []:
            if run.info.status == "RUNNING" and client.get_metric_history(run.info.run_id, "loss"):
                return str(run.info.run_id)
        time.sleep(0.3)
    raise AssertionError("the training never reached its first epoch")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic splits as prepare writes them (600 training images)."""
    from fmnist.data import prepare as prepare_stage
    from fmnist.params.config import parse_params
    from tests.conftest import synthetic_images, write_raw

    base = tmp_path_factory.mktemp("prepared")
    arrays = {"train": synthetic_images(600, seed=5), "test": synthetic_images(100, seed=4)}
    raw = write_raw(base / "raw", arrays)
    prepare_stage.run(parse_params({}), raw, base / "prepared")
    return base / "prepared"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_training_ends_its_run_killed_and_keeps_the_outputs(
    tmp_path: Path, prepared: Path, signum: signal.Signals, code: int
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _params(tmp_path, epochs=1000)  # the most params allow: never done
    before = _placeholders(tmp_path)
    proc = subprocess.Popen(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = _wait_mid_fit(uri, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-3000:]
    assert _one_line(stderr) == f"fmnist train: interrupted ({signum.name})"
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    after = {name: (tmp_path / "out" / name).read_bytes() for name in TRAIN_OUTPUTS}
    assert after == before


def test_a_killed_training_is_closed_by_the_next_command(tmp_path: Path, prepared: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _params(tmp_path, epochs=1000)  # the most params allow: never done
    proc = subprocess.Popen(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = _wait_mid_fit(uri, proc)
    proc.kill()  # SIGKILL: nothing runs in the process any more, the run stays RUNNING
    proc.wait(timeout=60)
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    _params(tmp_path, epochs=1)
    done = subprocess.run(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"fmnist: closed run {run_id} as KILLED: its process had died" in done.stdout
    killed = MlflowClient(uri).get_run(run_id)
    assert killed.info.status == "KILLED" and "was gone" in killed.data.tags[NOTE_TAG]
    assert [r.info.status for r in _runs(uri) if r.info.status == "RUNNING"] == []


def test_an_interrupted_evaluate_leaves_the_training_run_finished(
    tmp_path: Path, prepared: Path
) -> None:
    import psutil

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _params(tmp_path, epochs=1)
    trained = subprocess.run(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "out"
    evaluate = [
        FMNIST, "evaluate", "--model", str(out / "model.keras"), "--data", str(prepared),
        "--trained", str(out / "trained.json"), "--params", str(tmp_path / "params.yaml"),
        "--metrics", str(out / "e.json"), "--classes", str(out / "c.json"),
        "--confusion-csv", str(out / "c.csv"), "--confusion-png", str(out / "c.png"),
    ]  # fmt: skip
    codes = set()
    for cpu_seconds in (0.5, 1.5, 2.5):  # wherever the signal lands, the run stays FINISHED
        proc = subprocess.Popen(evaluate, env=_env(uri), cwd=tmp_path, stderr=subprocess.PIPE)
        while proc.poll() is None and sum(psutil.Process(proc.pid).cpu_times()[:2]) < cpu_seconds:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        codes.add(proc.returncode)
        assert all(r.info.status == "FINISHED" for r in _runs(uri))
    assert codes <= {0, 130} and 130 in codes


def test_a_training_that_diverges_registers_nothing_and_writes_nothing(
    tmp_path: Path, prepared: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _params(tmp_path, epochs=2, optimizer="sgd", learning_rate=1000.0)
    before = _placeholders(tmp_path)
    done = subprocess.run(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 8
    line = _one_line(done.stderr)
    assert line.startswith("fmnist train: error: training diverged: ")
    assert line.endswith("(sgd, learning_rate 1000.0); lower train.learning_rate")
    assert [r.info.status for r in _runs(uri)] == ["FAILED"]
    assert {n: (tmp_path / "out" / n).read_bytes() for n in TRAIN_OUTPUTS} == before


# ---------------------------------------------------------------- the tracking store


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_a_dead_tracking_server_fails_train_in_one_line(tmp_path: Path, prepared: Path) -> None:
    _params(tmp_path)
    before = _placeholders(tmp_path)
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = subprocess.run(
        _train_command(tmp_path, prepared), env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 5
    assert _one_line(done.stderr).startswith(
        f"fmnist train: error: MLflow tracking server {uri} cannot be reached ("
    )
    assert time.monotonic() - started < 20 + 60  # the deadline, plus TensorFlow's start-up
    assert {n: (tmp_path / "out" / n).read_bytes() for n in TRAIN_OUTPUTS} == before


def test_a_silent_tracking_server_fails_within_its_deadline(silent_port: int) -> None:
    uri = f"http://127.0.0.1:{silent_port}"
    started = time.monotonic()
    done = subprocess.run(
        [FMNIST, "models", "--params", str(REPO / "params.yaml")],
        env=_env(uri, FMNIST_TRACKING_TIMEOUT="3"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 5
    assert _one_line(done.stderr) == (
        f"fmnist models: error: MLflow tracking server {uri} did not answer within 3 s; "
        "start it (`make up`) or set MLFLOW_TRACKING_URI "
        "(FMNIST_TRACKING_TIMEOUT sets the wait)"
    )
    assert time.monotonic() - started < 3 * 3 + 15


@pytest.mark.parametrize(
    ("uri_of", "says"),
    [
        (lambda d: "ftp://user:pw@host/x", "tracking URI 'ftp://user:***@host/x': unsupported "
         "scheme 'ftp'"),
        (lambda d: f"sqlite:///{d / 'garbage.db'}", "is not an MLflow sqlite store (file is not "
         "a database)"),
    ],
)  # fmt: skip
def test_unusable_stores_are_one_line(tmp_path: Path, uri_of: object, says: str) -> None:
    (tmp_path / "garbage.db").write_bytes(b"this is no sqlite database" * 100)
    uri = uri_of(tmp_path)  # type: ignore[operator]
    done = subprocess.run(
        [FMNIST, "models", "--params", str(REPO / "params.yaml")],
        env=_env(uri), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 5
    line = _one_line(done.stderr)
    assert line.startswith("fmnist models: error: ") and says in line, line
    assert "pw" not in done.stderr


def _mount_prefix(script: str) -> tuple[str, ...]:
    """Run a command in a private mount namespace after `script` (root and unshare)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting a tmpfs needs root and unshare")
    probe = ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    return ("unshare", "--mount", "sh", "-c", f'{script} || exit 99; exec "$@"', "sh")


def test_a_read_only_store_is_named(tmp_path: Path, prepared: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    _params(tmp_path)
    subprocess.run([FMNIST, "models", "--params", str(tmp_path / "params.yaml")],
                   env=_env(uri), check=True, capture_output=True, timeout=120)  # fmt: skip
    saved = tmp_path / "saved"
    shutil.copytree(store, saved)
    prefix = _mount_prefix(
        f"mount -t tmpfs tmpfs {store} && cp -a {saved}/. {store}/ && mount -o remount,ro {store}"
    )
    done = subprocess.run(
        [*prefix, *_train_command(tmp_path, prepared)], env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 5, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert line.startswith(f"fmnist train: error: the sqlite MLflow store {store / 'mlflow.db'}")
    assert "read-only" in line


def test_a_full_disk_for_the_model_is_one_line(tmp_path: Path, prepared: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _params(tmp_path, epochs=1)
    (tmp_path / "out").mkdir()
    prefix = _mount_prefix(f"mount -t tmpfs -o size=16k tmpfs {tmp_path / 'out'}")
    done = subprocess.run(
        [*prefix, *_train_command(tmp_path, prepared)], env=_env(uri), cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 9, done.stderr[-3000:]
    line = _one_line(done.stderr)
    assert line.startswith(f"fmnist train: error: {tmp_path / 'out'}") and "no space left" in line
    assert [r.info.status for r in _runs(uri)] == ["FAILED"]
