"""The model card: what it says, in what order, within MLflow's description limit."""

from __future__ import annotations

import dataclasses
import re

from fmnist.registry.card import (
    DESCRIPTION_LIMIT,
    PENDING,
    CardFacts,
    DataFile,
    artifact_link,
    model_card,
    promotion_text,
)
from fmnist.registry.promotion import Decision

RUN = "0123456789abcdef0123456789abcdef"
SUMMARY = 'Model: "패션 MNIST 모델"\n│ hidden (Dense) │ (None, 100) │ 78,500 │\n'


def facts(**changes: object) -> CardFacts:
    base = CardFacts(
        model_name="패션 MNIST 모델",
        run_id=RUN,
        data_version="4f7e78867dec818336101bac8b689872.dir",
        data_files=[
            DataFile("fashion-mnist-train", "training", "data/prepared/train.npz", "a" * 32, 48000),
            DataFile("fashion-mnist-val", "validation", "data/prepared/val.npz", "b" * 32, 12000),
            DataFile("fashion-mnist-test", "testing", "data/prepared/test.npz", "c" * 32, 10000),
        ],
        params={"train.optimizer": "rmsprop", "model.hidden.0.units": "100"},
        summary=SUMMARY,
        summary_artifact="model_summary.txt",
        metrics={"test_loss": 0.41234, "test_accuracy": 0.85921},
        per_class={"Coat": {"precision": 0.8, "recall": 0.75, "f1": 0.7742, "support": 1000.0}},
        images=[("Confusion matrix (test)", "evaluation/confusion.png")],
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def headings(card: str) -> list[str]:
    return re.findall(r"^#+ (.+)$", card, flags=re.MULTILINE)


def test_the_card_says_what_the_model_is_from_and_for() -> None:
    card = model_card(facts())
    assert card.startswith(
        "패션 MNIST 모델: a Fashion-MNIST classifier (Keras) with test_accuracy "
        "0.8592, trained, evaluated and registered by fmnist's DVC pipeline"
    )
    assert headings(card) == [
        "Intended use", "Promotion", "Test metrics", "Per class (test)",
        "Confusion matrix (test)", "Data", "Params", "Keras summary",
    ]  # fmt: skip
    assert f"from MLflow run `{RUN}`." in card
    assert "28x28 grayscale" in card and "white on a black background" in card
    assert "photographs" in card and "colour images" in card and "other objects" in card
    assert PENDING in card
    assert "| test_accuracy | 0.8592 |" in card and "| test_loss | 0.4123 |" in card
    assert "| Coat | 0.8000 | 0.7500 | 0.7742 | 1000 |" in card
    assert "DVC hash `4f7e78867dec818336101bac8b689872.dir`" in card
    assert (
        "| fashion-mnist-train | training | `data/prepared/train.npz` | "
        f"`{'a' * 32}` | 48000 |" in card
    )
    # params sorted: model before train
    assert card.index("model.hidden.0.units") < card.index("train.optimizer")
    assert f"```\n{SUMMARY.rstrip()}\n```" in card
    link = f"get-artifact?path=evaluation%2Fconfusion.png&run_uuid={RUN}"
    assert f"![Confusion matrix (test)]({link})" in card
    assert f"[model_summary.txt](get-artifact?path=model_summary.txt&run_uuid={RUN})" in card


def test_the_promotion_decision_replaces_pending() -> None:
    promoted = Decision(True, "no champion yet (test_accuracy 0.8592)")
    kept = Decision(False, "test_accuracy 0.8500 does not beat champion v1 (0.8592) by more")
    assert promotion_text(promoted) == f"**promoted to `champion`**: {promoted.reason}"
    assert promotion_text(kept) == f"**not promoted**: {kept.reason}"
    card = model_card(facts(), promoted)
    assert PENDING not in card and promotion_text(promoted) in card
    assert "@champion" not in card  # the UI's markdown would link @word to GitHub


def test_what_the_run_lacks_is_said_not_invented() -> None:
    card = model_card(facts(per_class=None, images=[], data_files=[], data_version="unversioned"))
    assert "Per class (test)\n\nnot logged on the run" in card
    assert "no datasets logged on the run" in card
    assert "not versioned by DVC (`unversioned`" in card
    assert "Confusion matrix" not in card and "get-artifact?path=evaluation" not in card


def test_a_long_card_keeps_to_mlflows_limit() -> None:
    huge = SUMMARY + "│ dense (Dense) │ (None, 100) │ 10,100 │\n" * 80
    card = model_card(facts(summary=huge))
    assert len(card) <= DESCRIPTION_LIMIT
    assert "dense (Dense)" not in card and "### Keras summary" in card
    assert card.rstrip().endswith(f"(get-artifact?path=model_summary.txt&run_uuid={RUN})")
    many = {f"model.hidden.{i}.units": "100" for i in range(200)}
    cut = model_card(facts(summary=huge, params=many))
    assert len(cut) <= DESCRIPTION_LIMIT
    assert cut.endswith("*(cut to MLflow's description limit: the run holds everything)*\n")
    assert len(model_card(facts())) < DESCRIPTION_LIMIT  # the tutorial's card: whole


def test_artifact_links_are_relative_to_the_ui_and_quoted() -> None:
    assert artifact_link(RUN, "a dir/b&c.png") == (
        f"get-artifact?path=a%20dir%2Fb%26c.png&run_uuid={RUN}"
    )
