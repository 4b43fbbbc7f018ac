"""A registered version's model card (its markdown description in the registry); pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from fmnist.registry.promotion import CHAMPION, Decision
from fmnist_model.images import CLASS_NAMES

DESCRIPTION_LIMIT = 5000  # characters: MLflow's model-version description (VARCHAR(5000))
PENDING = "*pending*: the promotion rule is applied right after registration"
INTENDED_USE = (
    "### Intended use\n\n"
    "**For**: 28x28 grayscale thumbnails of one piece of clothing, footwear or a bag in "
    "Fashion-MNIST's style: centred, white on a black background, raw pixel values 0-255 "
    "(`(n, 28, 28)` arrays or 784-value rows), sorted into its ten classes: "
    f"{', '.join(CLASS_NAMES)}.\n\n"
    "**Not for**:\n\n"
    "- photographs (backgrounds, lighting, other framing) or pictures in another style;\n"
    "- other objects: it answers one of the ten classes whatever it is shown;\n"
    "- colour images: it learned from grayscale only;\n"
    "- dark items on a light background, or items off-centre or cut off."
)


@dataclass(frozen=True)
class DataFile:
    """One dataset the version's run used, as the run records it."""

    name: str  # fashion-mnist-train
    context: str  # training, validation, testing
    path: str  # data/prepared/train.npz
    digest: str  # DVC's hash of the file: md5 of its bytes
    rows: int | None


@dataclass(frozen=True)
class CardFacts:
    """What a model card says, read from the version's run and the pipeline's records."""

    model_name: str  # the Keras model's name
    run_id: str
    data_version: str  # DVC's hash of data/prepared (md5 ....dir), or "unversioned"
    data_files: Sequence[DataFile]
    params: Mapping[str, str]  # model.* and train.*, as the run logged them
    summary: str  # Keras' summary()
    summary_artifact: str  # the run's artifact holding it
    metrics: Mapping[str, float]  # test_loss, test_accuracy
    per_class: Mapping[str, Mapping[str, float]] | None  # class -> precision, recall, f1, support
    images: Sequence[tuple[str, str]]  # (title, the run's artifact path), logged ones only


def artifact_link(run_id: str, path: str) -> str:
    """A run's artifact as the MLflow UI's server serves it, relative to the UI's page."""
    return f"get-artifact?path={quote(path, safe='')}&run_uuid={run_id}"


def promotion_text(decision: Decision | None) -> str:
    """The promotion rule's result, one line (pending before the rule has run)."""
    if decision is None:
        return PENDING
    # `champion` in code: the UI's markdown turns @word into a GitHub profile link
    verdict = f"promoted to `{CHAMPION}`" if decision.promote else "not promoted"
    return f"**{verdict}**: {decision.reason}"


def model_card(facts: CardFacts, decision: Decision | None = None) -> str:
    """The card within DESCRIPTION_LIMIT: too long, the Keras summary is left to its link,
    and the rest cut at a line if still."""
    for with_summary in (True, False):
        card = _join(facts, decision, with_summary=with_summary)
        if len(card) <= DESCRIPTION_LIMIT:
            return card
    cut = "\n\n*(cut to MLflow's description limit: the run holds everything)*\n"
    head = card[: DESCRIPTION_LIMIT - len(cut)]
    return head[: head.rfind("\n")] + cut


def _join(facts: CardFacts, decision: Decision | None, *, with_summary: bool) -> str:
    parts = [
        _opening(facts),
        INTENDED_USE,
        f"### Promotion\n\n{promotion_text(decision)}",
        _table(("metric", "value"), [(k, f"{v:.4f}") for k, v in facts.metrics.items()],
               "### Test metrics"),
        _per_class(facts.per_class),
        *(f"### {title}\n\n![{title}]({artifact_link(facts.run_id, path)})"
          for title, path in facts.images),
        _data(facts.data_version, facts.data_files),
        _table(("param", "value"), [(k, f"`{v}`") for k, v in sorted(facts.params.items())],
               "### Params"),
        _summary(facts, with_summary),
    ]  # fmt: skip
    return "\n\n".join(p for p in parts if p) + "\n"


def _opening(facts: CardFacts) -> str:
    """Plain text first: the registry's version list shows a description's first characters."""
    accuracy = facts.metrics.get("test_accuracy")
    scored = "" if accuracy is None else f" with test_accuracy {accuracy:.4f}"
    return (
        f"{facts.model_name}: a Fashion-MNIST classifier (Keras){scored}, trained, evaluated and "
        f"registered by fmnist's DVC pipeline from MLflow run `{facts.run_id}`."
    )


def _per_class(per_class: Mapping[str, Mapping[str, float]] | None) -> str:
    if not per_class:
        return "### Per class (test)\n\nnot logged on the run"
    rows = [
        (name, *(f"{v[k]:.4f}" for k in ("precision", "recall", "f1")), str(int(v["support"])))
        for name, v in per_class.items()
    ]
    return _table(("class", "precision", "recall", "f1", "support"), rows, "### Per class (test)")


def _data(data_version: str, files: Sequence[DataFile]) -> str:
    folder = (
        f"`data/prepared`, DVC hash `{data_version}` (its `md5` in `dvc.lock`)"
        if data_version.endswith(".dir")
        else f"`data/prepared`, not versioned by DVC (`{data_version}`: the folder did not hold "
        "what `dvc.lock` records when train ran)"
    )
    head = f"### Data\n\n{folder}; each file's DVC hash names its copy in the DVC cache."
    rows = [
        (f.name, f.context, f"`{f.path}`", f"`{f.digest}`", "" if f.rows is None else str(f.rows))
        for f in files
    ]
    if not rows:
        return f"{head}\n\nno datasets logged on the run"
    return _table(("dataset", "context", "file", "DVC hash (md5)", "rows"), rows, head)


def _summary(facts: CardFacts, with_summary: bool) -> str:
    link = f"[{facts.summary_artifact}]({artifact_link(facts.run_id, facts.summary_artifact)})"
    if not with_summary:
        return f"### Keras summary\n\n{link}"
    return f"### Keras summary\n\n```\n{facts.summary.rstrip()}\n```\n\n{link}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> str:
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    lines += [f"| {' | '.join(cell.replace('|', '&#124;') for cell in r)} |" for r in rows]
    return f"{title}\n\n" + "\n".join(lines)
