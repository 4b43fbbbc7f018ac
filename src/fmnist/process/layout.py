"""Where the pipeline's files live, named once, relative to the project's root (dvc.yaml spells
the same paths; a test holds the two together)."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
RAW = Path("data/raw")  # download: the four verified IDX files
PREPARED = Path("data/prepared")  # prepare: train/val/test .npz splits
MODEL = Path("models/model.keras")  # train
SUMMARY = Path("models/summary.txt")  # train: Keras' summary(), kept in git
TRAINED = Path("models/trained.json")  # train's record: its MLflow run and logged model
HISTORY = Path("plots/train_history.csv")  # train: per-epoch metrics (DVC plots)
TRAIN_METRICS = Path("metrics/train.json")  # train: the last epoch (DVC metrics)
TEST_METRICS = Path("metrics/evaluate.json")  # evaluate: test_loss, test_accuracy
CLASSES = Path("metrics/classes.json")  # evaluate: per-class precision, recall, f1
CONFUSION_CSV = Path("plots/confusion.csv")  # evaluate: actual,predicted per test image
CONFUSION_PNG = Path("plots/confusion.png")  # evaluate
REGISTERED = Path("models/registered.json")  # register's record: the registry version

# In the training's MLflow run, beside the Keras summary (tracking.SUMMARY_ARTIFACT): what
# evaluate adds, and what each registered version's model card shows.
CLASSES_ARTIFACT = "evaluation/classes.json"  # per-class precision, recall, f1, support
CONFUSION_ARTIFACT = "evaluation/confusion.png"
CURVES_ARTIFACT = "training/curves.png"  # loss and accuracy per epoch, train and val
