"""One run_<stage>() per DVC stage: the only place that reads and writes files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.config import Params
from fmnist.errors import DataIntegrityError, FmnistError, TrackingError, first_line
from fmnist.files import atomic_path
from fmnist.sweep import Outcome, Training  # at run time: flows validate these as parameters

if TYPE_CHECKING:
    from fmnist.experiments import LineSink
    from fmnist.overrides import RunOverrides
    from fmnist.promotion import Decision

SPLITS = ("train", "val", "test")
RAW_FILES = {  # split -> (images, labels) in data/raw
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------- file helpers


def write_text(dest: Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(dest: Path, data: Any) -> None:
    write_text(dest, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: missing (run the stage that writes it first)") from None
    except json.JSONDecodeError as exc:
        raise DataIntegrityError(f"{path}: not valid JSON ({exc})") from None


RUN_RECORD_KEYS = (
    "run_id", "model_uri", "optimizer",
    "fmnist.data.prepared", "fmnist.git.commit", "fmnist.model.name",
)  # fmt: skip


def read_run_record(path: Path) -> dict[str, Any]:
    """models/run.json as train writes it, every key present."""
    return _checked_run_record(read_json(path), str(path))


def experiment_run_record(root: Path, ref: str) -> dict[str, Any]:
    """models/run.json as DVC experiment ref committed it, every key present."""
    from fmnist.experiments import experiment_json

    path = "models/run.json"
    return _checked_run_record(experiment_json(root, ref, path), f"{ref}:{path}")


def _checked_run_record(record: Any, where: str) -> dict[str, Any]:
    missing = [k for k in RUN_RECORD_KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        raise DataIntegrityError(
            f"{where}: missing {', '.join(missing)} (re-run `dvc repro train`)"
        )
    return dict(record)


def write_csv(dest: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(dest, buffer.getvalue())


def save_split(dest: Path, x: np.ndarray, y: np.ndarray) -> None:
    """x (n, 28, 28) float32, y (n,) uint8 -> an uncompressed .npz, written atomically."""
    with atomic_path(dest) as tmp, tmp.open("wb") as f:
        np.savez(f, x=x, y=y)


def load_split(path: Path, *, as_pixels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a prepared split and check it is what prepare writes: x float32 (n, 28, 28), y uint8.

    as_pixels: x comes back as the uint8 pixels prepare scaled (x == pixels / 255 exactly,
    checked), a quarter of the memory; the float32 array is read in chunks and is never whole
    in memory.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("y.npy") as f:
                y = np.lib.format.read_array(f)
            with archive.open("x.npy") as f:
                x = _read_images(f, path, as_pixels)
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: missing (run `dvc repro prepare` first)") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataIntegrityError(
            f"{path}: not a prepared split with arrays x and y ({exc})"
        ) from None
    if x.shape[0] == 0:
        raise DataIntegrityError(f"{path}: the split is empty (re-run `dvc repro prepare`)")
    if y.dtype != np.uint8 or y.shape != (x.shape[0],):
        raise DataIntegrityError(
            f"{path}: y is {y.dtype} {y.shape}, expected uint8 ({x.shape[0]},)"
        )
    return x, y


_CHUNK_ROWS = 2048  # 6.4 MB of float32 images at a time


def _read_images(f: Any, path: Path, as_pixels: bool) -> np.ndarray:
    """The x array of a split from its open .npy member, chunk by chunk."""
    from fmnist.data.prepare import unscale_images
    from fmnist_model.images import IMAGE_SHAPE

    version = np.lib.format.read_magic(f)
    header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran_order, dtype = header(f)
    if dtype != np.float32 or len(shape) != 3 or shape[1:] != IMAGE_SHAPE or fortran_order:
        raise DataIntegrityError(f"{path}: x is {dtype} {shape}, expected float32 (n, 28, 28)")
    out = np.empty(shape, np.uint8 if as_pixels else np.float32)
    row_values = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    for start in range(0, shape[0], _CHUNK_ROWS):
        rows = min(_CHUNK_ROWS, shape[0] - start)
        chunk = np.frombuffer(f.read(rows * row_values * dtype.itemsize), dtype=dtype)
        if chunk.size != rows * row_values:
            raise DataIntegrityError(f"{path}: x is truncated at row {start}")
        chunk = chunk.reshape(rows, *IMAGE_SHAPE)
        if as_pixels:
            try:
                chunk = unscale_images(chunk)
            except ValueError as exc:
                raise DataIntegrityError(f"{path}: x rows {start}-{start + rows}: {exc}") from None
        out[start : start + rows] = chunk
    return out


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dvc_dir_md5(file_md5s: Mapping[str, str]) -> str:
    """The hash DVC 3 gives a directory output (dvc.lock's `md5: ....dir`)."""
    entries = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(file_md5s.items())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def data_hash(directory: Path) -> str:
    """DVC's hash of a data directory, computed the way DVC does, so a run leads to its data."""
    files = {
        p.relative_to(directory).as_posix(): md5_file(p)
        for p in directory.rglob("*")
        if p.is_file()
    }
    return dvc_dir_md5(files)


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ; 'unknown' outside git."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


# ---------------------------------------------------------------- download


def run_download(params: Params, out_dir: Path, env_mirror: str | None) -> dict[str, str]:
    """data/raw: the four decompressed files, verified; returns which mirror served each."""
    from fmnist.data.download import HttpPolicy, download_dataset, mirror_order

    mirrors = mirror_order(params.download.mirrors, env_mirror)
    cfg = params.download
    policy = HttpPolicy(timeout=cfg.timeout, retries=cfg.retries, min_speed=cfg.min_speed)
    return download_dataset(mirrors, out_dir, policy)


# ---------------------------------------------------------------- prepare


def read_raw(raw_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) uint8 labels of a raw split, checked."""
    from fmnist.data.idx import check_pair, parse_idx

    images_name, labels_name = RAW_FILES[split]
    arrays = []
    for name, ndim in ((images_name, 3), (labels_name, 1)):
        path = raw_dir / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataIntegrityError(f"{path}: missing (run `dvc repro download` first)") from None
        arrays.append(parse_idx(data, ndim=ndim, source=str(path)))
    check_pair(arrays[0], arrays[1], source=str(raw_dir / images_name))
    return arrays[0], arrays[1]


def run_prepare(params: Params, raw_dir: Path, out_dir: Path) -> dict[str, int]:
    """data/prepared/{train,val,test}.npz, scaled and split as the tutorial; returns sizes."""
    from fmnist.data.prepare import make_split, split_indices

    images, labels = read_raw(raw_dir, "train")
    train_rows, val_rows = split_indices(labels, params.prepare)
    sizes = {}
    # One float32 split in memory at a time: peak stays far below the tutorial's float64 way.
    for split, rows in (("train", train_rows), ("val", val_rows)):
        part = make_split(images, labels, rows)
        save_split(out_dir / f"{split}.npz", part.x, part.y)
        sizes[split] = int(part.y.shape[0])
        del part
    test = make_split(*read_raw(raw_dir, "test"))
    save_split(out_dir / "test.npz", test.x, test.y)
    sizes["test"] = int(test.y.shape[0])
    return sizes


# ---------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainOutputs:
    model: Path  # models/model.keras
    summary: Path  # models/summary.txt
    run: Path  # models/run.json: the MLflow run and logged model
    history: Path  # plots/train_history.csv, per-epoch metrics (DVC plots)
    metrics: Path  # metrics/train.json, last epoch (DVC metrics)


def run_name(params: Params) -> str:
    acts = "-".join(h.activation for h in params.model.hidden)
    return f"{params.train.optimizer}-{acts}-{params.train.epochs}ep"


def run_train(
    params: Params,
    data_dir: Path,
    out: TrainOutputs,
    tracking_uri: str,
    root: Path,
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """Fit the model from params, track it in MLflow (as a child of parent_run_id, in a
    sweep), save it; returns the last epoch's metrics."""
    from fmnist import tracking
    from fmnist.model import build_model
    from fmnist.train import compile_model, seed_everything, training_batches

    train = load_split(data_dir / "train.npz", as_pixels=True)
    val = load_split(data_dir / "val.npz", as_pixels=True)
    raw_sample = val[0][:32].copy()  # raw 0-255 pixels, as the served model takes them
    with tracking.store_created_alongside(tracking_uri):  # while TensorFlow loads
        seed_everything(params.train.seed)
        model = build_model(params.model)
        compile_model(model, params.train)
        batches = training_batches(train, val, model, params.train)
        del train, val  # the batches hold their own copy
        return _fit_tracked(
            params, model, batches, raw_sample, data_dir, out, tracking_uri, root, parent_run_id
        )


def _fit_tracked(
    params: Params,
    model: Any,
    batches: Any,
    raw_sample: np.ndarray,
    data_dir: Path,
    out: TrainOutputs,
    tracking_uri: str,
    root: Path,
    parent_run_id: str | None,
) -> dict[str, Any]:
    """run_train's fit inside its MLflow run, and its outputs."""
    from fmnist import tracking
    from fmnist.model import summary_text
    from fmnist.served_model import log_served_model
    from fmnist.train import fit_model

    summary = summary_text(model)
    print(summary, flush=True)
    tags = {
        "fmnist.data.prepared": data_hash(data_dir),
        "fmnist.git.commit": git_commit(root),
        "fmnist.model.name": params.model.name,
    }
    with tracking.tracked_run(
        tracking_uri,
        params.tracking.experiment,
        run_name=run_name(params),
        tags=tags,
        parent_run_id=parent_run_id,
    ) as run_id:
        tracking.log_params(tracking.params_for_tracking(params))
        tracking.log_text(summary, tracking.SUMMARY_ARTIFACT)
        started = time.perf_counter()
        history = fit_model(model, batches, params.train, on_epoch_end=[tracking.log_epoch])
        fit_seconds = time.perf_counter() - started
        print(f"fit: {fit_seconds:.2f} s", flush=True)
        tracking.log_metrics({"fit_seconds": fit_seconds})  # timing: MLflow only, not DVC
        with atomic_path(out.model) as tmp_model:  # keeps the .keras suffix Keras wants
            model.save(tmp_model)
        model_uri, model_id = log_served_model(model, out.model, raw_sample)
        last = {k: v[-1] for k, v in history.items()}
        epochs = range(1, len(history["loss"]) + 1)
        write_csv(
            out.history,
            ["epoch", *history],
            [[e, *(history[k][e - 1] for k in history)] for e in epochs],
        )
        write_json(out.metrics, last)
        write_text(out.summary, summary)
        write_json(
            out.run,
            {
                "run_id": run_id,
                "model_uri": model_uri,
                "model_id": model_id,
                "optimizer": params.train.optimizer,
                **tags,
            },
        )
    return last


# ---------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvaluateOutputs:
    metrics: Path  # metrics/evaluate.json: test_loss, test_accuracy (DVC metrics)
    classes: Path  # metrics/classes.json: per-class precision, recall, f1 (DVC metrics)
    confusion_csv: Path  # plots/confusion.csv: actual,predicted per test image (DVC plot)
    confusion_png: Path  # plots/confusion.png


def load_keras_model(path: Path) -> Any:
    """A saved .keras model, Unicode names and all."""
    from fmnist.keras_compat import load_keras

    keras = load_keras()
    if not path.is_file():
        raise DataIntegrityError(f"{path}: missing (run `dvc repro train` first)")
    try:
        return keras.models.load_model(path)
    except (OSError, ValueError) as exc:
        raise DataIntegrityError(f"{path}: not a loadable Keras model ({exc})") from None


def run_evaluate(
    params: Params,
    model_path: Path,
    data_dir: Path,
    run_path: Path,
    out: EvaluateOutputs,
    tracking_uri: str,
) -> dict[str, float]:
    """Test metrics, per-class report and confusion matrix, to files and to the train run."""
    from fmnist import tracking
    from fmnist.evaluate import (
        CLASS_NAMES,
        confusion_figure,
        evaluate_predictions,
        flat_class_metrics,
    )

    x_test, y_test = load_split(data_dir / "test.npz")
    run_id = read_run_record(run_path)["run_id"]
    model = load_keras_model(model_path)
    x = x_test.reshape((x_test.shape[0], *model.input_shape[1:]))  # the model's own input form
    with warnings.catch_warnings():
        # Keras' NumPy backend ends every predict with "Your input ran out of data;
        # interrupting training": a false alarm (all batches were predicted).
        warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        proba = model.predict(x, batch_size=params.evaluate.batch_size, verbose=0)
    result = evaluate_predictions(y_test, proba)
    headline = {"test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
    write_json(out.metrics, headline)
    write_json(out.classes, result.per_class)
    names = [
        [CLASS_NAMES[a], CLASS_NAMES[p]] for a, p in zip(y_test, result.predicted, strict=True)
    ]
    write_csv(out.confusion_csv, ["actual", "predicted"], names)
    figure = confusion_figure(result.confusion)
    with atomic_path(out.confusion_png) as tmp:
        figure.savefig(tmp, format="png")
    # Added to the training's run without reopening it: the run stays FINISHED whatever
    # happens here (an interrupted evaluate cannot end it FAILED or leave it RUNNING).
    tracking.log_to_run(
        tracking_uri,
        run_id,
        metrics={**headline, **flat_class_metrics(result.per_class)},
        dicts={"evaluation/classes.json": result.per_class},
        files=[(out.confusion_png, "evaluation")],
    )
    return headline


# ---------------------------------------------------------------- register


def run_register(
    params: Params,
    run_path: Path,
    metrics_path: Path,
    summary_path: Path,
    out_path: Path,
    tracking_uri: str,
) -> dict[str, Any]:
    """A new registry version (alias `challenger`), then the promotion rule; returns its record."""
    run = read_run_record(run_path)
    metrics = read_json(metrics_path)
    try:
        summary = summary_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataIntegrityError(f"{summary_path}: missing (run `dvc repro train` first)") from None
    record = register_trained(params, run, metrics, summary, tracking_uri)
    write_json(out_path, record)
    return record


def register_trained(
    params: Params,
    run: Mapping[str, Any],
    metrics: Mapping[str, float],
    summary: str,
    tracking_uri: str,
) -> dict[str, Any]:
    """Register what train recorded (run.json), with evaluate's metrics and the Keras summary,
    then apply the promotion rule; returns the registered record (registered.json)."""
    from fmnist.registry import register_version, registered_record
    from fmnist.report import describe_version
    from fmnist.tracking import run_params

    tags = {
        **{k: f"{v:.4f}" for k, v in metrics.items()},
        "run_id": run["run_id"],
        "data.prepared": run["fmnist.data.prepared"],
        "git.commit": run["fmnist.git.commit"],
        "optimizer": run["optimizer"],
        "model.name": run["fmnist.model.name"],
        # the params the model was trained with (a flow run's overrides included)
        **{
            f"params.{k}": v
            for k, v in run_params(tracking_uri, run["run_id"]).items()
            if k.startswith(("model.", "train."))
        },
    }
    name = params.register_.model_name
    version, created, challenger_before = register_version(
        tracking_uri,
        name,
        run["model_uri"],
        run["run_id"],
        description=describe_version(run["fmnist.model.name"], summary, metrics),
        tags=tags,
    )
    number = int(version.version)
    _promote_or_undo(params, number, tracking_uri, created, challenger_before)
    return registered_record(tracking_uri, name, number)


def _promote_or_undo(
    params: Params, version: int, tracking_uri: str, created: bool, challenger_before: Any
) -> None:
    """The promotion rule on a version; if it fails and this step created the version, the
    registration is undone (`challenger` goes back to challenger_before)."""
    from fmnist.registry import undo_registration

    try:
        _apply_promotion_rule(params, version, tracking_uri, by_hand=False)
    except BaseException as exc:
        name = params.register_.model_name
        left = (
            undo_registration(tracking_uri, name, version, challenger_before)
            if created
            else f"v{version} stays as it was"
        )
        if isinstance(exc, FmnistError):
            raise TrackingError(f"{first_line(exc)}; {left}") from None
        raise


def _apply_promotion_rule(
    params: Params, version: int, tracking_uri: str, *, by_hand: bool, force: bool = False
) -> Decision:
    """The registry's promotion with register's thresholds: automatic, or by hand."""
    from fmnist.registry import promote

    cfg = params.register_
    return promote(
        tracking_uri,
        cfg.model_name,
        version,
        min_accuracy=cfg.min_accuracy,
        min_delta=cfg.min_delta,
        require_better=not by_hand,
        force=force,
    )


def run_promote(params: Params, version: int, force: bool, tracking_uri: str) -> str:
    """Make a version `champion` by hand (threshold unless forced); returns why it was."""
    decision = _apply_promotion_rule(params, version, tracking_uri, by_hand=True, force=force)
    if not decision.promote:
        raise TrackingError(
            f"{params.register_.model_name} v{version} not promoted: {decision.reason}"
        )
    return decision.reason


def set_params_for(root: Path, overrides: RunOverrides) -> list[str]:
    """A run's overrides as DVC `--set-param`s, checked against params.yaml first (a bad
    value stops here, in one line, before anything runs)."""
    from fmnist.config import load_params
    from fmnist.overrides import dotted_overrides, set_param_args

    params_file = root / "params.yaml"
    current = load_params(params_file)
    dotted = dotted_overrides(overrides, [layer.model_dump() for layer in current.model.hidden])
    load_params(params_file, dotted)
    return set_param_args(dotted)


@dataclass(frozen=True)
class PlannedTraining:
    """One training of a sweep, its DVC experiment name and `--set-param`s."""

    training: Training
    experiment: str
    set_params: list[str]


def plan_sweep(
    root: Path,
    sweep_name: str,
    optimizers: Sequence[str],
    activations: Sequence[str],
    base: RunOverrides,
) -> list[PlannedTraining]:
    """The grid, every cell validated against params.yaml before any training starts."""
    from fmnist.sweep import grid, training_overrides

    return [
        PlannedTraining(
            t, f"{sweep_name}-{t.name}", set_params_for(root, training_overrides(t, base))
        )
        for t in grid(optimizers, activations)
    ]


SWEEP_TARGET = "evaluate"  # a sweep's trainings stop here: only the best is registered


def run_sweep_training(
    root: Path,
    planned: PlannedTraining,
    parent_run_id: str,
    env: Mapping[str, str],
    tracking_uri: str,
    on_line: LineSink = print,
) -> Outcome:
    """prepare -> train -> evaluate as DVC experiment planned.experiment, its MLflow run a
    child of parent_run_id; a failure raises (StageError) and fails that child run only.

    When DVC reused an earlier training (same data, code and params: no new MLflow run), the
    store shows it (the run is not the parent's child): a small child run then links the
    parent to it, and the outcome and the cell's log say `reused run R`."""
    from fmnist import experiments
    from fmnist.sweep import reuse_note
    from fmnist.tracking import PARENT_ENV, link_reused_run, run_metrics

    ref = experiments.run_experiment(
        root,
        planned.experiment,
        planned.set_params,
        {**env, PARENT_ENV: parent_run_id},
        on_line,
        targets=(SWEEP_TARGET,),
    ).ref
    run_id = experiment_run_record(root, ref)["run_id"]
    last_epoch = experiments.experiment_json(root, ref, "metrics/train.json")
    tested = experiments.experiment_json(root, ref, "metrics/evaluate.json")
    metrics = {
        "val_accuracy": float(last_epoch["val_accuracy"]),
        "val_loss": float(last_epoch["val_loss"]),
        "test_accuracy": float(tested["test_accuracy"]),
        "test_loss": float(tested["test_loss"]),
    }
    note = reuse_note(run_id)
    name = planned.training.name
    reused = link_reused_run(tracking_uri, parent_run_id, name, run_id, metrics, note)
    if reused:
        on_line(note)
    return Outcome(
        planned.training,
        experiment=planned.experiment,
        run_id=run_id,
        val_accuracy=metrics["val_accuracy"],
        val_loss=metrics["val_loss"],
        test_accuracy=metrics["test_accuracy"],
        test_loss=metrics["test_loss"],
        fit_seconds=run_metrics(tracking_uri, run_id).get("fit_seconds"),
        reused_from=run_id if reused else None,
    )


def failed_training(planned: PlannedTraining, exc: BaseException) -> Outcome:
    """The outcome of a training that raised: its one-line error."""
    return Outcome(planned.training, experiment=planned.experiment, error=first_line(exc))


@dataclass(frozen=True)
class SweepResult:
    rows: list[dict[str, Any]]  # the comparison, best first
    registered: dict[str, Any]  # the best training's registry record (as registered.json)


def run_sweep_finish(
    params: Params, root: Path, outcomes: Sequence[Outcome], tracking_uri: str
) -> SweepResult:
    """Log the comparison to the (active) parent run, register the best training's model (by
    validation accuracy) and apply the promotion rule (test accuracy against the champion's).
    Every training failed: StageError, nothing registered."""
    from fmnist import experiments, tracking
    from fmnist.errors import StageError
    from fmnist.sweep import best, comparison_rows

    rows = comparison_rows(outcomes)
    tracking.log_dict({"trainings": rows}, tracking.SWEEP_ARTIFACT)
    failed = [o for o in outcomes if not o.ok]
    tracking.log_metrics({"trainings": len(outcomes), "failed": len(failed)})
    winner = best(outcomes)
    if winner is None:
        raise StageError(f"every training of the sweep failed; first: {failed[0].error}")
    ref = experiments.experiment_ref(root, str(winner.experiment))
    record = register_trained(
        params,
        experiment_run_record(root, ref),
        experiments.experiment_json(root, ref, "metrics/evaluate.json"),
        experiments.experiment_file(root, ref, "models/summary.txt"),
        tracking_uri,
    )
    tracking.log_metrics(
        {
            "best_val_accuracy": float(winner.val_accuracy or 0.0),  # what chose it
            "best_test_accuracy": float(winner.test_accuracy or 0.0),  # what promotion compares
        }
    )
    tracking.set_tags(
        {
            "fmnist.sweep.best": winner.training.name,
            "fmnist.sweep.best_run_id": str(winner.run_id),
            "fmnist.registered.version": str(record["version"]),
            "fmnist.registered.promotion": record["promotion"],
        }
    )
    return SweepResult(rows, record)


def run_sweep(
    params: Params,
    root: Path,
    sweep_name: str,
    plan: Sequence[PlannedTraining],
    jobs: int,
    tracking_uri: str,
    on_line: LineSink = print,
) -> SweepResult:
    """The sweep without Prefect (`fmnist sweep`): up to `jobs` trainings at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from fmnist import experiments, tracking

    env = experiments.stage_env({"MLFLOW_TRACKING_URI": tracking_uri})
    # The data once, in the workspace: every training restores it from DVC's cache.
    experiments.reproduce(root, "prepare", env, on_line)
    with tracking.sweep_run(tracking_uri, params.tracking.experiment, sweep_name, plan) as parent:

        def one(planned: PlannedTraining) -> Outcome:
            def tagged(line: str) -> None:
                on_line(f"[{planned.training.name}] {line}")

            try:
                return run_sweep_training(root, planned, parent, env, tracking_uri, tagged)
            except FmnistError as exc:
                tagged(f"failed: {first_line(exc)}")
                return failed_training(planned, exc)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(one, plan))
        return run_sweep_finish(params, root, outcomes, tracking_uri)
