"""`fmnist register` stopped at any moment: SIGTERM and SIGINT sent to the real command when
its version row appears, when it takes the promotion lock, when `champion` moves, while it
waits for the lock, right after it says it succeeded, and SIGKILL. Each time the run's version
is complete (card, `challenger`, the promotion's tags, the record file) or gone, the line and
the exit code agree with that, and the next `register` completes the version.

The store is a real sqlite file (polled with sqlite3 to catch the moments), also behind a real
`mlflow server`. The training is made once (tiny, synthetic); each trial starts from a copy
of its store: v1 @champion @challenger from another run, the training not yet registered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from fmnist.registry.card import PENDING
from tests.integration.conftest import mlflow_server as running_mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FMNIST = str(Path(sys.executable).parent / "fmnist")
NAME = "fashion-mnist"
TRAINED = ("trained.json", "evaluate.json", "summary.txt")


@dataclass(frozen=True)
class Trained:
    """A training's records and the store holding its run, v1 from another run."""

    folder: Path  # trained.json, evaluate.json, summary.txt, params.yaml, template.db
    run_id: str


def _baseline(uri: str) -> None:
    """v1, registered completely from another (finished) run: @champion and @challenger."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("baseline")
    run_id = client.create_run(experiment).info.run_id
    model = mlflow.initialize_logged_model(
        name="model", source_run_id=run_id, experiment_id=experiment
    )
    mlflow.finalize_logged_model(model.model_id, "READY")
    client.set_terminated(run_id, "FINISHED")
    client.create_registered_model(NAME, tags={"fmnist.champion_history": "[1]"})
    reason = "no champion yet (test_accuracy 0.0100)"
    tags = {"test_accuracy": "0.0100", "fmnist.promotion.promoted": "true",
            "fmnist.promotion.reason": reason}  # fmt: skip
    client.create_model_version(NAME, f"models:/{model.model_id}", run_id, tags=tags)
    client.update_model_version(NAME, "1", description=f"**promoted**: {reason}")
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias(NAME, alias, "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """prepare, train and evaluate in this process (the pieces tests/scoring_helpers uses)."""
    from fmnist.data import prepare as prepare_stage
    from fmnist.params.config import parse_params
    from fmnist.pipeline.records import read_trained
    from fmnist.training import evaluate as evaluate_stage
    from fmnist.training import train as train_stage
    from tests.conftest import synthetic_images, write_raw

    base = tmp_path_factory.mktemp("trained")
    params = parse_params({
        "train": {"epochs": 1, "batch_size": 16, "steps_per_execution": 4, "seed": 7},
        "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
    })  # fmt: skip
    arrays = {"train": synthetic_images(300, seed=1), "test": synthetic_images(100, seed=2)}
    uri = f"sqlite:///{base / 'template.db'}"
    with contextlib.chdir(base):  # MLflow's default artifact root is relative to the cwd
        prepare_stage.run(params, write_raw(base / "raw", arrays), base / "prepared")
        _baseline(uri)
        out = train_stage.TrainOutputs(
            base / "model.keras", base / "summary.txt", base / "trained.json",
            base / "history.csv", base / "train.json",
        )  # fmt: skip
        train_stage.run(params, base / "prepared", out, uri, base)
        evaluate = evaluate_stage.EvaluateOutputs(
            base / "evaluate.json", base / "classes.json", base / "c.csv", base / "c.png"
        )
        evaluate_stage.run(params, out.model, base / "prepared", out.trained, evaluate, uri)
    (base / "params.yaml").write_text("register:\n  min_accuracy: 0.0\n")
    return Trained(base, read_trained(out.trained)["run_id"])


@dataclass
class Trial:
    """One attempt: a copy of the store, the record file's place, the command."""

    folder: Path
    trained: Trained
    uri: str  # what the command talks to: the sqlite file, or a server on it

    @property
    def db(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def record(self) -> Path:
        return self.folder / "registered.json"

    def command(self) -> list[str]:
        t = self.trained.folder
        return [
            FMNIST, "register", "--trained", str(t / "trained.json"),
            "--metrics", str(t / "evaluate.json"), "--summary", str(t / "summary.txt"),
            "--params", str(t / "params.yaml"), "--out", str(self.record),
        ]  # fmt: skip

    def start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri}
        return subprocess.Popen(
            self.command(), env=env, cwd=self.folder, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.uri}
        return subprocess.run(
            self.command(), env=env, cwd=self.folder, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip


def _new_trial(trained: Trained, folder: Path, uri: str | None = None) -> Trial:
    folder.mkdir(parents=True)
    shutil.copy(trained.folder / "template.db", folder / "mlflow.db")
    return Trial(folder, trained, uri or f"sqlite:///{folder / 'mlflow.db'}")


# The moments, as the store shows them (sqlite3 on the file: no MLflow in the loop).
MOMENTS = {
    "version": "SELECT 1 FROM model_versions WHERE run_id = ? AND current_stage != "
    "'Deleted_Internal'",
    "lock": "SELECT 1 FROM model_versions WHERE name = 'fashion-mnist.promotion-lock' "
    "AND current_stage != 'Deleted_Internal' AND ? != ''",  # a live ticket: taking the lock
    "queued": "SELECT count(*) FROM model_versions WHERE name = 'fashion-mnist.promotion-lock' "
    "AND current_stage != 'Deleted_Internal' AND ? != '' HAVING count(*) >= 2",  # in line
    "champion": "SELECT 1 FROM registered_model_aliases a JOIN model_versions v "
    "ON a.name = v.name AND a.version = v.version WHERE a.alias = 'champion' AND v.run_id = ?",
}


def _wait_for(trial: Trial, proc: subprocess.Popen[str], moment: str, limit: float = 120) -> bool:
    """Poll the store in a tight loop until the moment shows; False if the command ended."""
    deadline = time.monotonic() + limit
    while not trial.db.exists():
        time.sleep(0.01)
    db = sqlite3.connect(f"file:{trial.db}?mode=ro", uri=True, timeout=0.05)
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(sqlite3.OperationalError):  # a writer holds the file
                if db.execute(MOMENTS[moment], (trial.trained.run_id,)).fetchone():
                    return True
            time.sleep(0.0005)
    finally:
        db.close()
    raise AssertionError(f"no {moment} moment within {limit} s")


def _lines(text: str) -> list[str]:
    """The command's own lines (TensorFlow's and absl's start-up chatter left out)."""
    from tests.integration.test_run_faults import TF_BANNER

    return [x for x in text.splitlines() if x.strip() and not TF_BANNER.match(x)]


def _state(trial: Trial) -> int | None:
    """The run's version if complete (with a matching record file), None if gone; anything
    in between fails the test."""
    client = MlflowClient(f"sqlite:///{trial.db}")
    mine = client.search_model_versions(f"name = '{NAME}' and run_id = '{trial.trained.run_id}'")
    assert len(mine) <= 1, [v.version for v in mine]
    if not mine:  # gone: the registry is as it was, no record
        assert int(client.get_model_version_by_alias(NAME, "champion").version) == 1
        assert int(client.get_model_version_by_alias(NAME, "challenger").version) == 1
        assert not trial.record.exists()
        return None
    version = client.get_model_version(NAME, mine[0].version)
    number = int(version.version)
    reason = version.tags.get("fmnist.promotion.reason")
    card = version.description or ""
    assert reason and PENDING not in card and reason in card, (number, card[:300], reason)
    assert {"fmnist.promotion.promoted", "fmnist.promotion.compared_version"} <= set(version.tags)
    assert "challenger" in version.aliases, (number, version.aliases)
    assert trial.record.exists(), f"v{number} complete but no record"
    record = json.loads(trial.record.read_text())
    assert (record["version"], record["aliases"]) == (number, sorted(version.aliases))
    assert record["promotion"] == reason and record["run_id"] == trial.trained.run_id
    return number


def _no_lock_left(trial: Trial) -> None:
    """The promotion lock is free at once: none left behind for the next one to break."""
    from fmnist.registry.champion import promotion_lock

    said: list[str] = []
    with promotion_lock(MlflowClient(f"sqlite:///{trial.db}"), NAME, 5, said.append):
        pass
    assert said == [], said


def _check_outcome(trial: Trial, proc: subprocess.Popen[str], signum: int) -> str:
    """What the interrupted command left and said agree; returns 'complete' or 'gone'."""
    stdout, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr[-3000:]
    version = _state(trial)
    _no_lock_left(trial)
    said_success = any(x.startswith(f"registered {NAME} version") for x in stdout.splitlines())
    if proc.returncode == 0:
        assert said_success and version is not None, (stdout, stderr)
        return "complete"
    assert proc.returncode == 128 + signum, (proc.returncode, stdout, stderr[-3000:])
    assert not said_success, stdout
    line = _lines(stderr)[-1]
    assert line.startswith(f"fmnist register: interrupted ({signal.Signals(signum).name})")
    if version is None:
        assert "deleted" in line and "as it was before" in line, line
        return "gone"
    assert f"v{version}" in line and "registered in full" in line, line
    return "complete"


def _register_again_completes(trial: Trial) -> None:
    done = trial.run()
    assert done.returncode == 0, done.stderr[-3000:]
    version = _state(trial)
    assert version is not None
    said = f"registered {NAME} version {version} as @challenger @champion"
    assert said in done.stdout.splitlines(), done.stdout


@pytest.mark.parametrize(
    ("moment", "signum"),
    [("version", signal.SIGTERM), ("version", signal.SIGINT), ("lock", signal.SIGTERM),
     ("lock", signal.SIGINT), ("champion", signal.SIGTERM)],
)  # fmt: skip
def test_a_signal_leaves_the_version_complete_or_gone(
    trained: Trained, tmp_path: Path, moment: str, signum: int
) -> None:
    outcomes = []
    for attempt in range(3):  # the fault was seen 2 of 2 and 2 of 6 times
        trial = _new_trial(trained, tmp_path / str(attempt))
        proc = trial.start()
        assert _wait_for(trial, proc, moment), proc.communicate()[1][-3000:]
        proc.send_signal(signum)
        outcomes.append(_check_outcome(trial, proc, signum))
        _register_again_completes(trial)
    print(moment, signal.Signals(signum).name, outcomes)


def test_sigkill_mid_registration_is_completed_by_the_next_register(
    trained: Trained, tmp_path: Path
) -> None:
    for attempt, moment in enumerate(("version", "lock")):
        trial = _new_trial(trained, tmp_path / str(attempt))
        proc = trial.start()
        assert _wait_for(trial, proc, moment), proc.communicate()[1][-3000:]
        proc.kill()  # nothing runs in the process any more: whatever it left stays
        proc.communicate(timeout=60)
        _register_again_completes(trial)


def test_a_half_made_version_is_completed_by_the_next_register(
    trained: Trained, tmp_path: Path
) -> None:
    """The version as MLflow's register_model creates it (row and tags: no card, no alias,
    no decision), the state a SIGKILL right after it leaves; then `register`."""
    import mlflow

    from fmnist.pipeline.records import read_trained

    trial = _new_trial(trained, tmp_path / "half")
    record = read_trained(trained.folder / "trained.json")
    mlflow.set_tracking_uri(trial.uri)
    made = mlflow.register_model(record["model_uri"], NAME, tags={"test_accuracy": "0.9000"})
    assert not made.description and made.aliases == []
    done = trial.run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert _state(trial) == int(made.version) == 2
    assert done.stdout.splitlines()[-2] == f"registered {NAME} version 2 as @challenger @champion"
    card = MlflowClient(trial.uri).get_model_version(NAME, "2").description
    again = trial.run()  # complete: returned as it is, nothing moved
    assert again.returncode == 0 and again.stdout.splitlines() == done.stdout.splitlines()[-2:]
    assert _state(trial) == 2
    assert MlflowClient(trial.uri).get_model_version(NAME, "2").description == card


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_waiting_for_the_promotion_lock_undoes_it_at_once(
    trained: Trained, tmp_path: Path, signum: int
) -> None:
    """Another promotion holds the lock (this process, through fmnist's own lock): the
    command waits for it; a signal then stops it within seconds, its version deleted and
    `challenger` given back, not after the lock's minute."""
    from fmnist.registry.champion import promotion_lock

    trial = _new_trial(trained, tmp_path / "waiting")
    with promotion_lock(MlflowClient(trial.uri), NAME, echo=lambda line: None):
        proc = trial.start()
        assert _wait_for(trial, proc, "queued"), proc.communicate()  # waiting for the lock
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=120)
        waited = time.monotonic() - sent
        assert proc.returncode == 128 + signum, (stdout, stderr[-3000:])
        assert waited < 30, f"stopped {waited:.1f} s after the signal"  # not the lock's 60 s
        line = _lines(stderr)[-1]
        name = signal.Signals(signum).name
        assert line == (
            f"fmnist register: interrupted ({name}); {NAME} v2 was deleted: "
            "the registry is as it was before"
        ), stderr
    assert _state(trial) is None
    _register_again_completes(trial)


def test_a_printed_success_is_exit_0_whenever_a_signal_comes_after(
    trained: Trained, tmp_path: Path
) -> None:
    """SIGTERM right after `registered ...` reaches stdout, and a little later: while the
    command returns, runs its exit hooks and the interpreter unloads."""
    codes = []
    for attempt, delay in enumerate((0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)):
        trial = _new_trial(trained, tmp_path / str(attempt))
        proc = trial.start()
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"registered {NAME} version 2"), proc.communicate()
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        assert proc.returncode == 0, (delay, proc.returncode, stderr[-2000:])
        assert _state(trial) == 2
    print("exit codes", codes)


# ---------------------------------------------------------------- through a tracking server


@pytest.fixture
def server_trial(trained: Trained, tmp_path: Path) -> Iterator[Trial]:
    """A trial whose command talks to a real `mlflow server` on the copied sqlite file."""
    trial = _new_trial(trained, tmp_path / "served")
    with running_mlflow_server(f"sqlite:///{trial.db}", tmp_path / "server") as url:
        trial.uri = url
        yield trial


@pytest.mark.parametrize("moment", ["version", "lock"])
def test_through_a_server_a_signal_leaves_the_version_complete_or_gone(
    server_trial: Trial, moment: str
) -> None:
    trial = server_trial
    proc = trial.start()
    assert _wait_for(trial, proc, moment), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    print(moment, _check_outcome(trial, proc, signal.SIGTERM))
    _register_again_completes(trial)
