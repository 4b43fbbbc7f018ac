"""The search's study: where it lives, opening and continuing it, its trials' bookkeeping,
and a database that cannot be reached, each on a real Optuna storage."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from fmnist.params.config import SearchConfig
from fmnist.process.errors import SearchError
from fmnist.tracking.lifecycle import owner
from fmnist.tuning import study as study_store
from fmnist.tuning.space import Tuning
from fmnist.tuning.study import (
    OWNER_ATTR,
    PARENT_ATTR,
    STORAGE_ENV,
    claim,
    fail_orphans,
    load,
    storage_url,
    tell,
)

SEARCH = SearchConfig(study="test-study", startup_trials=2, warmup_epochs=1)
TUNING = Tuning(SEARCH.study)


@pytest.fixture
def study(study_root: Path) -> Any:
    """The study in a fresh sqlite file under tmp_path (the default place)."""
    return load(study_root, SEARCH, TUNING)


def _dead_owner() -> str:
    """An owner string, as lifecycle.owner() makes it, of a process of this host that ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()  # not reaped yet: still readable
    proc.wait(timeout=60)
    return f"{socket.gethostname()}:{proc.pid}:{started:.2f}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def test_storage_url_defaults_to_an_absolute_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    url = storage_url(Path("project"))  # relative: resolved against the working folder
    assert url == f"sqlite:///{tmp_path.resolve() / 'project' / 'optuna.db'}"
    assert Path(url.removeprefix("sqlite:///")).is_absolute()
    monkeypatch.setenv(STORAGE_ENV, "")  # set but empty: the default too
    assert storage_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"


def test_storage_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, "postgresql://fmnist:pw@db:5432/optuna")
    assert storage_url(tmp_path) == "postgresql://fmnist:pw@db:5432/optuna"


def test_load_creates_the_study_and_a_second_load_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert not (tmp_path / "optuna.db").exists()
    first = load(tmp_path, SEARCH, TUNING)
    assert (tmp_path / "optuna.db").is_file()
    assert first.study_name == "test-study"
    assert first.direction == optuna.study.StudyDirection.MAXIMIZE
    assert isinstance(first.sampler, optuna.samplers.TPESampler)
    assert isinstance(first.pruner, optuna.pruners.MedianPruner)
    trial = first.ask()
    trial.suggest_int("layers", 1, 4)
    first.tell(trial, 0.81)

    again = load(tmp_path, SEARCH, TUNING, worker_seed=1)
    trials = again.get_trials()
    assert [(t.number, t.state, t.value) for t in trials] == [(0, TrialState.COMPLETE, 0.81)]
    assert trials[0].params == {"layers": trial.params["layers"]}
    assert again.best_value == pytest.approx(0.81)
    assert again.ask().number == 1
    names = [s.study_name for s in optuna.get_all_study_summaries(storage_url(tmp_path))]
    assert names == ["test-study"]  # continued, not created twice


def test_tell_complete(study: Any) -> None:
    trial = study.ask()
    tell(study, trial, "complete", 0.9)
    done = study.get_trials()[0]
    assert (done.state, done.value) == (TrialState.COMPLETE, 0.9)


def test_tell_pruned_keeps_its_last_reported_value(study: Any) -> None:
    trial = study.ask()
    trial.report(0.6, step=1)
    trial.report(0.7, step=2)
    tell(study, trial, "pruned", None)
    done = study.get_trials()[0]
    assert done.state == TrialState.PRUNED
    assert done.value == pytest.approx(0.7)


@pytest.mark.parametrize("state", ["failed", "anything else"])
def test_tell_failed(study: Any, state: str) -> None:
    trial = study.ask()
    tell(study, trial, state, None)
    done = study.get_trials()[0]
    assert (done.state, done.value) == (TrialState.FAIL, None)


def test_claim_marks_the_trial_as_this_process(study: Any) -> None:
    trial = study.ask()
    claim(trial, "parent-run-1")
    attrs = study.get_trials()[0].user_attrs
    assert attrs == {OWNER_ATTR: owner(), PARENT_ATTR: "parent-run-1"}


def test_fail_orphans_fails_the_dead_process_trials_only(study: Any) -> None:
    orphan = study.ask()
    orphan.set_user_attr(OWNER_ATTR, _dead_owner())
    mine = study.ask()
    mine.set_user_attr(OWNER_ATTR, owner())  # this live process
    other_host = study.ask()
    other_host.set_user_attr(OWNER_ATTR, f"elsewhere.example:{orphan.number + 1}:12.00")
    unowned = study.ask()  # no owner recorded: not ours to judge
    finished = study.ask()
    finished.set_user_attr(OWNER_ATTR, _dead_owner())
    study.tell(finished, 0.5)  # not RUNNING: left as it is

    assert fail_orphans(study) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {
        orphan.number: TrialState.FAIL,
        mine.number: TrialState.RUNNING,
        other_host.number: TrialState.RUNNING,
        unowned.number: TrialState.RUNNING,
        finished.number: TrialState.COMPLETE,
    }
    assert fail_orphans(study) == []  # once failed, never again


def test_an_unreachable_postgresql_is_one_redacted_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg")
    port = _free_port()
    monkeypatch.setenv(STORAGE_ENV, f"postgresql://fmnist:s3cret@127.0.0.1:{port}/optuna")
    with pytest.raises(SearchError) as caught:
        load(tmp_path, SEARCH, TUNING)
    message = str(caught.value)
    assert "\n" not in message
    assert "s3cret" not in message
    assert message.startswith(f"the study database postgresql://fmnist:***@127.0.0.1:{port}/optuna")
    assert caught.value.exit_code == 10


def test_an_unopenable_sqlite_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORAGE_ENV, "sqlite:////nonexistent/dir/optuna.db")
    with pytest.raises(SearchError) as caught:
        load(tmp_path, SEARCH, TUNING)
    message = str(caught.value)
    assert "\n" not in message
    assert "/nonexistent/dir/optuna.db" in message
    assert "unable to open database file" in message
    assert not (tmp_path / "optuna.db").exists()  # the environment's URL, not the default


def test_a_changed_choice_list_is_refused_before_any_trial(study_root: Path) -> None:
    from fmnist.params.config import parse_params
    from fmnist.tuning.space import suggest

    search = parse_params({}).search
    study = study_store.load(study_root, search, Tuning(search.study))
    trial = study.ask()
    suggest(trial, search.space)
    study.tell(trial, 0.8)
    study_store.check_space(study, search)  # unchanged: fine

    narrowed = parse_params({"search": {"space": {"optimizers": ["adam"]}}}).search
    with pytest.raises(SearchError) as caught:
        study_store.check_space(study, narrowed)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("search.space.optimizers is ['adam'], but study fashion-mnist-search")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:ab/cd@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        ("postgresql//u:s3cret@h/db", "FMNIST_SEARCH_STORAGE (not a database URL)"),
    ],
)
def test_printed_urls_never_hold_a_password(url: str, shown: str) -> None:
    assert study_store.shown_url(url) == shown
