"""The best trial of a search or sweep written back: a DVC experiment that trains it (its run
nested under the search's or sweep's), evaluates it once on the test set and registers it
under the promotion rule. `dvc exp apply <name>` then puts its params.yaml and dvc.lock in the
workspace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmnist.params.config import Params, load_params
from fmnist.params.overrides import set_param_args
from fmnist.pipeline import dvc_cli
from fmnist.process import layout
from fmnist.tracking import runs as tracking
from fmnist.tuning.grid import Tuning, cell_name
from fmnist.tuning.report import TrialRecord
from fmnist.tuning.space import differences

REGISTERED_ATTR = "fmnist.registered"  # on the study: the trial last written back, its version


def write_back(
    params: Params,
    tuning: Tuning,
    root: Path,
    study: Any,
    best: TrialRecord,
    parent_run_id: str,
    uri: str,
    on_line: Callable[[str], None],
) -> tuple[dict[str, Any], str | None, float | None]:
    """(the registered record, the experiment's name, its test accuracy) for the best trial,
    as DVC experiment `<study>-trial-<n>-<run>` with prepare.val_size = search.refit_val_size
    (the network chosen, trained on more of the data; still checked on a held-out split), or a
    sweep's `<sweep>-<optimizer>-<activation>` on the split its cells had. A best written back
    before (the study remembers which) is not trained again: its version is read back from the
    registry."""
    from fmnist.registry.versions import registered_record
    from fmnist.tuning.trial import trained_with

    done = study.user_attrs.get(REGISTERED_ATTR)
    if isinstance(done, dict) and done.get("trial") == best.number:
        record = registered_record(uri, done["name"], int(done["version"]))
        on_line(
            f"best unchanged: trial {best.number} was written back as DVC experiment "
            f"{done['experiment']} and registered as v{record['version']}"
        )
        return record, None, record.get("test_accuracy")
    current = load_params(root / layout.PARAMS)
    # the trial's whole model and train sections, where params.yaml says otherwise now
    dotted = (
        differences(best.trained_with, trained_with(current))
        if best.trained_with
        else dict(best.overrides)
    )
    refit = None if tuning.grid else params.search.refit_val_size
    if refit is not None and refit != current.prepare.val_size:
        dotted["prepare.val_size"] = refit  # chosen on validation: now more data to learn from
    load_params(root / layout.PARAMS, dotted)  # the repo's params.yaml takes them (one line if not)
    label = cell_name(best.overrides) if tuning.grid else f"trial-{best.number}-{parent_run_id[:6]}"
    name = f"{tuning.study}-{label}"
    env = dvc_cli.stage_env({"MLFLOW_TRACKING_URI": uri, tracking.PARENT_ENV: parent_run_id})
    ref = dvc_cli.run_experiment(root, name, set_param_args(dotted), env, on_line).ref
    written = dvc_cli.experiment_json(root, ref, layout.REGISTERED)
    record = registered_record(uri, written["name"], int(written["version"]))  # as it is now
    test_accuracy = float(dvc_cli.experiment_json(root, ref, layout.TEST_METRICS)["test_accuracy"])
    study.set_user_attr(
        REGISTERED_ATTR,
        {
            "trial": best.number,
            "experiment": name,
            "name": record["name"],
            "version": record["version"],
        },
    )
    return record, name, test_accuracy
