"""The stages' output paths under a test's folder, as dvc.yaml lays them out."""

from __future__ import annotations

from pathlib import Path

from fmnist.training import evaluate as evaluate_stage
from fmnist.training import train as train_stage


def train_outputs(root: Path) -> train_stage.TrainOutputs:
    return train_stage.TrainOutputs(
        model=root / "models/model.keras",
        summary=root / "models/summary.txt",
        trained=root / "models/trained.json",
        history=root / "plots/train_history.csv",
        metrics=root / "metrics/train.json",
    )


def evaluate_outputs(root: Path) -> evaluate_stage.EvaluateOutputs:
    return evaluate_stage.EvaluateOutputs(
        root / "metrics/evaluate.json",
        root / "metrics/classes.json",
        root / "plots/confusion.csv",
        root / "plots/confusion.png",
    )
