"""The train stage: the model from params, fitted on data/prepared, tracked as an MLflow run,
logged as a servable model; models/model.keras, its summary, history, metrics and record."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.data.splits import load_split
from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.pipeline.lineage import data_version, git_commit
from fmnist.process.failures import raise_lost_signal
from fmnist.process.files import atomic_path, write_csv, write_json, write_text
from fmnist.tracking import runs as tracking
from fmnist.tracking.runs import log_datasets, split_input


@dataclass(frozen=True)
class TrainOutputs:
    model: Path  # models/model.keras
    summary: Path  # models/summary.txt
    trained: Path  # models/trained.json: the record of the MLflow run and logged model
    history: Path  # plots/train_history.csv, per-epoch metrics (DVC plots)
    metrics: Path  # metrics/train.json, last epoch (DVC metrics)


def run(
    params: Params,
    data_dir: Path,
    out: TrainOutputs,
    tracking_uri: str,
    root: Path,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Fit, track (a child of parent_run_id in a sweep) and save; the last epoch's metrics."""
    from fmnist.process.console import fit_settings
    from fmnist.training import fit
    from fmnist.training.model import build_model, summary_text
    from fmnist.training.served_model import log_served_model

    with ThreadPoolExecutor(max_workers=1) as pool:
        # DVC's check of the data (`dvc data status`, a second process) runs while Keras loads
        checked = pool.submit(data_version, root, data_dir)
        train = load_split(data_dir / "train.npz")
        val = load_split(data_dir / "val.npz")
        raw_sample = val[0][:32].copy()  # raw 0-255 pixels, as the served model takes them
        fit.seed_everything(params.train.seed)
        model = build_model(params.model)
        fit.compile_model(model, params.train, train_rows=len(train[1]))
        version = checked.result()
    tags = {
        records.DATA_TAG: version,
        records.COMMIT_TAG: git_commit(root),
        records.MODEL_NAME_TAG: params.model.name,
    }
    inputs = [  # the splits as the run's datasets: DVC's hashes of the files and their folder
        split_input(data_dir, "train", version, len(train[1])),
        split_input(data_dir, "val", version, len(val[1])),
    ]
    # The batches hold their own copy of the data; the list is their only holder, so fitting
    # can hand them over and free that copy before the model is saved and logged.
    batches = [fit.training_batches(train, val, model, params.train)]
    del train, val
    summary = summary_text(model)
    print(summary, flush=True)
    acts = "-".join(h.activation for h in params.model.hidden)
    with tracking.tracked_run(
        tracking_uri,
        params.tracking.experiment,
        run_name=f"{params.train.optimizer}-{acts}-{params.train.epochs}ep",
        tags=tags,
        parent_run_id=parent_run_id,
    ) as run_id:
        tracking.load_mlflow().log_params(tracking.params_for_tracking(params))
        log_datasets(tracking_uri, run_id, inputs)
        tracking.load_mlflow().log_text(summary, tracking.SUMMARY_ARTIFACT)
        started = time.perf_counter()
        verbose, progress = fit_settings()  # a live bar on a terminal, else a line per epoch
        hooks = [tracking.log_epoch, lambda epoch, logs: raise_lost_signal()]
        history = fit.fit_model(
            model, batches.pop(), params.train, hooks, verbose, progress
        )  # the data is freed here: the peak RSS is the fit's, not the fit's plus logging's
        fit_seconds = time.perf_counter() - started
        print(f"fit: {fit_seconds:.2f} s", flush=True)
        tracking.load_mlflow().log_metrics({"fit_seconds": fit_seconds})  # MLflow only, not DVC
        with atomic_path(out.model) as tmp_model:  # keeps the .keras suffix Keras wants
            model.save(tmp_model)
        model_uri, model_id = log_served_model(model, out.model, raw_sample)
        last = {k: v[-1] for k, v in history.items()}
        rows = [[e + 1, *values] for e, values in enumerate(zip(*history.values(), strict=True))]
        write_csv(out.history, ["epoch", *history], rows)
        write_json(out.metrics, last)
        write_text(out.summary, summary)
        record = {"run_id": run_id, "model_uri": model_uri, "model_id": model_id}
        write_json(out.trained, {**record, "optimizer": params.train.optimizer, **tags})
    return last
