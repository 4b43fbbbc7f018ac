"""The search's bookkeeping on a real sqlite study (no training): its trials as records."""

from __future__ import annotations

import json
from pathlib import Path

from optuna.trial import TrialState

from fmnist.params.config import parse_params
from fmnist.tuning import study as study_store
from fmnist.tuning.report import counts
from fmnist.tuning.search import study_trials
from fmnist.tuning.space import Tuning
from fmnist.tuning.trial import OVERRIDES_ATTR, RUN_ATTR


def test_study_trials_name_each_state_as_fmnist_prints_it(study_root: Path) -> None:
    search = parse_params({}).search
    study = study_store.load(study_root, search, Tuning(search.study))
    done = study.ask()
    done.set_user_attr(OVERRIDES_ATTR, json.dumps({"train.epochs": 5}))
    done.set_user_attr(RUN_ATTR, "run-0")
    study.tell(done, 0.875)
    pruned = study.ask()
    pruned.report(0.5, 1)
    pruned.report(0.625, 2)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    study_store.tell_failed(study, failed, "training diverged")
    study.ask()  # still running

    records = study_trials(study)

    assert [(r.number, r.state, r.val_accuracy) for r in records] == [
        (0, "complete", 0.875),
        (1, "pruned", 0.625),  # its last reported epoch
        (2, "failed", None),  # and why: its error
        (3, "running", None),
    ]
    assert records[0].overrides == {"train.epochs": 5} and records[0].run_id == "run-0"
    assert records[2].error == "training diverged"
    assert counts(records) == {"complete": 1, "pruned": 1, "failed": 1, "running": 1, "waiting": 0}
