"""The Optuna studies of the search and the sweeps, and their trials' bookkeeping. Their database
is FMNIST_SEARCH_STORAGE (any SQLAlchemy URL), else `optuna.db` at the project's root: from the
environment only, as it may hold a password (fmnist prints it redacted)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from fmnist.params.config import SearchConfig
from fmnist.process.errors import SearchError, first_line
from fmnist.tracking.lifecycle import owner, owner_gone
from fmnist.tracking.mlflow_store import redact
from fmnist.tuning.space import Grid, Tuning

STORAGE_ENV = "FMNIST_SEARCH_STORAGE"
DEFAULT_DB = "optuna.db"
OWNER_ATTR = "fmnist.owner"  # the process running a trial (host:pid:start), as lifecycle has it
PARENT_ATTR = "fmnist.search_run"  # the MLflow run of the search invocation that ran a trial
ERROR_ATTR = "fmnist.error"  # a failed trial's one line
SETTINGS_ATTR = "fmnist.sweep"  # on a sweep's study: its grid and what every cell trains with
CONNECT_ARGS = {
    "sqlite": {"timeout": 60},  # seconds a trial waits for another's write to the sqlite file
    "postgresql": {"connect_timeout": 10, "options": "-c statement_timeout=60000"},  # bounded
}
CHOICES = {  # a categorical parameter of the study -> the space's list it draws from
    "activation": "activations",
    "batch_norm": "batch_norm",
    "optimizer": "optimizers",
    "schedule": "schedules",
    "batch_size": "batch_sizes",
}


def storage_url(root: Path) -> str:
    return os.environ.get(STORAGE_ENV) or f"sqlite:///{(root / DEFAULT_DB).resolve()}"


def shown_url(url: str, text: str | None = None) -> str:
    """The URL as fmnist prints it, or text with its password hidden (never an unparsable URL)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        bad = "(not a database URL)" if text is None else "is not a database URL"
        return f"{STORAGE_ENV} {bad}"
    if text is None:
        return redact(parsed.render_as_string(hide_password=True))
    return redact(text.replace(parsed.password, "***") if parsed.password else text)


def fingerprint(url: str) -> str:
    """Names a store without saying what it is (no password travels with a job)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def load(root: Path, search: SearchConfig, tuning: Tuning, *, worker_seed: int = 0) -> Any:
    """The study tuning.study (created if new): the search's TPE (grouped, for the layers'
    conditional units) and median pruner, or a sweep's grid (no pruning)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    url = storage_url(root)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        connect = CONNECT_ARGS.get(url.split(":")[0].split("+")[0], {})
        engine = {"connect_args": connect, "pool_pre_ping": True}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        study = optuna.create_study(
            storage=storage, study_name=tuning.study, direction="maximize", load_if_exists=True
        )
        if tuning.grid:
            # GridSampler without its stop at the last cell: Study.stop works inside optimize()
            # only, and trials here are asked and told (fmnist counts the cells itself)
            class AskAndTellGrid(optuna.samplers.GridSampler):
                def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                    pass

            sampler: Any = AskAndTellGrid(tuning.grid.space(), seed=search.seed)
            pruner: Any = optuna.pruners.NopPruner()
        else:
            # seeded apart: the same seed in two workers would suggest the same networks
            seed = search.seed + 7919 * len(study.get_trials(deepcopy=False)) + worker_seed
            sampler = optuna.samplers.TPESampler(
                n_startup_trials=search.startup_trials, multivariate=True, group=True, seed=seed
            )
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=search.startup_trials, n_warmup_steps=search.warmup_epochs
            )
        return optuna.load_study(
            study_name=tuning.study, storage=storage, sampler=sampler, pruner=pruner
        )
    except Exception as exc:  # SQLAlchemy's and Optuna's errors alike: one line, redacted
        line = shown_url(url, first_line(exc))
        raise SearchError(f"the study database {shown_url(url)}: {line}") from None


def pending(study: Any, grid: Grid, settings: str) -> int:
    """The trials a sweep's run adds: a new study's every cell (the sampler's), else those not
    done (a failed training, with its error, is) enqueued; other settings are refused."""
    had = study.user_attrs.get(SETTINGS_ATTR)
    if had is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    elif had != settings:
        raise SearchError(
            f"sweep {study.study_name} ran with other settings: give the same options, or "
            "another --name"
        )
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return len(grid.cells())
    done = [t.params for t in trials if t.state.name == "COMPLETE" or ERROR_ATTR in t.user_attrs]
    todo = [cell for cell in grid.cells() if cell not in done]
    for cell in todo:
        study.enqueue_trial(cell)
    return len(todo) + sum(t.state.name == "WAITING" for t in trials)  # a killed run's too


def check_space(study: Any, search: SearchConfig) -> None:
    """Refuses a choice list unlike the one the study's trials drew from (Optuna cannot
    change one within a study) before any trial."""
    for trial in study.get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            key = CHOICES.get(name)
            now = tuple(getattr(search.space, key)) if key else ()
            if key and tuple(distribution.choices) != now:
                raise SearchError(
                    f"search.space.{key} is {list(now)}, but study {search.study}'s "
                    f"trials drew from {list(distribution.choices)}: put it back, or name a new "
                    "search.study"
                )


def claim(trial: Any, parent_run_id: str) -> None:
    """Mark a trial as this process's, for this search invocation (fail_orphans reads it)."""
    trial.set_user_attr(OWNER_ATTR, owner())
    trial.set_user_attr(PARENT_ATTR, parent_run_id)


def tell(study: Any, trial: Any, state: str, value: float | None, error: str | None = None) -> None:
    """complete -> its value; pruned -> PRUNED (its last reported value kept); else failed."""
    from optuna.trial import TrialState

    if state in ("complete", "pruned"):
        study.tell(trial, value if state == "complete" else None, state=TrialState[state.upper()])
    else:
        tell_failed(study, trial, error)


def tell_failed(study: Any, trial: Any, error: str | None = None) -> None:
    """Best effort (the trial is failing already): FAIL (and why) unless the study was told."""
    from optuna.trial import TrialState

    with contextlib.suppress(Exception):  # a store down now: the next search's fail_orphans
        if error:
            trial.set_user_attr(ERROR_ATTR, error)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def fail_orphans(study: Any) -> list[int]:
    """Trials left RUNNING by a gone process of this host are told FAIL; their numbers."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        recorded = str(trial.user_attrs.get(OWNER_ATTR, ""))
        if recorded and owner_gone(recorded):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
    return failed
