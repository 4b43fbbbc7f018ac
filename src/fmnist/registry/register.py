"""The register stage: the trained model as a new version (alias `challenger`) described by
its model card, then the promotion rule; models/registered.json is the version as read back.
The card is read from the training's run, which register never changes. Also `fmnist promote`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fmnist.params.config import Params
from fmnist.pipeline import records
from fmnist.process import layout
from fmnist.process.errors import TrackingError
from fmnist.process.failures import Held, signals_held
from fmnist.process.files import read_json, read_text, write_json
from fmnist.registry import versions
from fmnist.registry.card import CardFacts, DataFile, model_card
from fmnist.registry.champion import promote as promote_version
from fmnist.registry.promotion import Decision
from fmnist.tracking.mlflow_store import store_client
from fmnist.tracking.runs import SUMMARY_ARTIFACT

_IMAGES = (  # the run's images a card shows (those evaluate logged), in order
    ("Confusion matrix (test)", layout.CONFUSION_ARTIFACT),
    ("Training curves", layout.CURVES_ARTIFACT),
)
_ARTIFACT_DIRS = sorted(
    {p.rsplit("/", 1)[0] for p in (layout.CLASSES_ARTIFACT, *(p for _, p in _IMAGES))}
)
_CONTEXT_ORDER = {"training": 0, "validation": 1, "testing": 2}  # the card's order of datasets


def run(
    params: Params,
    trained_path: Path,
    metrics_path: Path,
    summary_path: Path,
    out_path: Path,
    tracking_uri: str,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Register what train recorded with its metrics and card, apply the promotion rule, write
    the record (read back from the registry) to out_path and return it. report: called with it
    once complete, unless a signal came meanwhile (no signal can cut what it says).
    All or nothing: signals are held (signals_held), and stop it before the version is made,
    while it waits for the lock (the version is deleted again), or once all is complete."""
    trained, metrics = records.read_trained(trained_path), read_json(metrics_path)
    facts = _card_facts(tracking_uri, trained, metrics, read_text(summary_path))
    tags = {
        **{k: f"{v:.4f}" for k, v in metrics.items()},
        "run_id": trained["run_id"],
        records.VERSION_DATA_TAG: trained[records.DATA_TAG],
        "git.commit": trained[records.COMMIT_TAG],
        "optimizer": trained["optimizer"],
        "model.name": trained[records.MODEL_NAME_TAG],
        **{f"params.{k}": v for k, v in facts.params.items()},
    }
    name = params.register_.model_name
    held, record = Held(), None  # what the except below reads
    try:
        with signals_held() as held:
            held.doing = f"the registration of {trained['run_id']}'s model as {name}"
            registration = versions.register_version(
                tracking_uri, name, trained["model_uri"], trained["run_id"],
                description=model_card(facts), tags=tags, held=held,
            )  # fmt: skip
            number = int(registration.version.version)
            if registration.state == versions.RESUMED:
                print(f"fmnist: completing {name} v{number}, left half-made by a register "
                      "that was stopped", flush=True)  # fmt: skip
            _promote_or_undo(params, registration, tracking_uri, facts, held)
            record = versions.registered_record(tracking_uri, name, number)
            write_json(out_path, record)
            if report is not None and held.signum is None:
                report(record)
            return record  # (a signal held meanwhile is raised as the block ends)
    except KeyboardInterrupt as exc:
        if not getattr(exc, "__notes__", None):  # (an undo's note says what it left)
            exc.add_note(_left_by_interrupt(exc, held, record))
        raise


def _left_by_interrupt(exc: KeyboardInterrupt, held: Held, record: dict[str, Any] | None) -> str:
    """What an interrupted registration left, when no undo said it."""
    if getattr(exc, "at_once", False):
        doing = held.doing or "the registration"
        then = "the next `fmnist register` completes it"
        return f"stopped at once: {doing} may be left half-made; {then}"
    if record is not None:
        aliases = " ".join(f"@{a}" for a in record["aliases"])
        return (
            f"{record['name']} v{record['version']} was registered in full before stopping "
            f"({aliases}; promotion: {record['promotion']})"
        )
    return "nothing was registered"


def _promote_or_undo(
    params: Params, registration: versions.Registration, uri: str, facts: CardFacts, held: Held
) -> None:
    """The promotion rule, then the card with its result (the last registry write). A rule
    failing or a signal in the lock's wait undoes a new version; once the rule ran nothing is
    undone (a moved `champion` was its decision): a *pending* card is completed next run."""
    name, number = params.register_.model_name, int(registration.version.version)
    if registration.state == versions.COMPLETE:
        return
    try:
        decision = _apply_rule(params, number, uri, require_better=True, checkpoint=held.safe_point)
    except BaseException as exc:
        before, state = registration.challenger_before, registration.state
        left = versions.undo_registration(uri, name, number, before, state, exc)
        versions.raise_undone(exc, "", left)
    try:  # the decision as recorded (one holding `champion` already was decided before)
        found = versions.model_version(uri, name, number)
        card = model_card(facts, Decision.from_tags(dict(found.tags)) or decision)
        versions.describe_version(uri, name, number, card)
    except TrackingError as exc:
        again = "run register again to complete it"
        raise TrackingError(f"{exc}; its card still says pending ({again})") from None


def _card_facts(
    tracking_uri: str, trained: Mapping[str, Any], metrics: Mapping[str, float], summary: str
) -> CardFacts:
    """The card's facts: the records, and the run's params, datasets, report and images."""
    run_id = trained["run_id"]
    with store_client(tracking_uri, run_id) as client:  # a missing run says only that
        run = client.get_run(run_id)
    with (
        store_client(tracking_uri, run_id, "reading it for the model card: ") as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        logged = {a.path for d in _ARTIFACT_DIRS for a in client.list_artifacts(run_id, d)}
        per_class = None
        if layout.CLASSES_ARTIFACT in logged:  # a damaged report: DataIntegrityError, exit 3
            per_class = read_json(
                Path(client.download_artifacts(run_id, layout.CLASSES_ARTIFACT, tmp))
            )
    return CardFacts(
        model_name=trained[records.MODEL_NAME_TAG],
        run_id=run_id,
        data_version=trained[records.DATA_TAG],
        data_files=_data_files(run, trained[records.DATA_TAG]),
        # the params the model was trained with (a flow run's overrides included)
        params={k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
        summary=summary,
        summary_artifact=SUMMARY_ARTIFACT,
        metrics=metrics,
        per_class=per_class,
        images=[(title, path) for title, path in _IMAGES if path in logged],
    )


def _data_files(run: Any, data_version: str) -> list[DataFile]:
    """The run's datasets in the card's order, each path without its `@<folder hash>`."""
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    files = []
    for given in run.inputs.dataset_inputs if run.inputs else []:
        dataset = given.dataset
        context = next((t.value for t in given.tags if t.key == MLFLOW_DATASET_CONTEXT), "")
        source = _json_object(dataset.source)
        location = str(source.get("uri") or source.get("url") or dataset.source)
        rows = _json_object(dataset.profile).get("num_rows")
        path = location.removesuffix(f"@{data_version}")
        files.append(DataFile(dataset.name, context, path, dataset.digest, rows))
    return sorted(files, key=lambda f: (_CONTEXT_ORDER.get(f.context, 3), f.name))


def _json_object(text: str | None) -> dict[str, Any]:
    """A JSON object's fields; {} for anything else (another tool's dataset records)."""
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _apply_rule(params: Params, version: int, tracking_uri: str, **how: Any) -> Decision:
    """champion.promote with register's thresholds (how: require_better, force, checkpoint)."""
    cfg = params.register_
    rule = cfg.model_dump(include={"min_accuracy", "min_delta"})
    return promote_version(tracking_uri, cfg.model_name, version, **rule, **how)


def promote(params: Params, version: int, force: bool, tracking_uri: str) -> Decision:
    """Make a version `champion` by hand (threshold unless forced); a refusal raises."""
    decision = _apply_rule(params, version, tracking_uri, require_better=False, force=force)
    if not decision.promote:
        name = params.register_.model_name
        raise TrackingError(f"{name} v{version} not promoted: {decision.reason}")
    return decision
