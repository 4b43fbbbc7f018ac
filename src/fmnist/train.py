"""Compile and fit: arrays and config in, a trained model and its history out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fmnist.config import ModelConfig, TrainConfig
from fmnist.errors import TrainingError
from fmnist.model import input_shape

if TYPE_CHECKING:
    import keras

EpochHook = Callable[[int, Mapping[str, float]], None]
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
VAL_BATCH_SIZE = 1024  # evaluation only: a larger batch is faster and changes no result


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend: the same params give the same run."""
    import keras

    keras.utils.set_random_seed(seed)


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer named in params, with its learning rate (and momentum for sgd)."""
    import keras

    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=cfg.momentum)
    factory = {
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
    }[cfg.optimizer]
    return factory(learning_rate=cfg.learning_rate)


def compile_model(model: keras.Model, cfg: TrainConfig) -> None:
    """The tutorial's compile: sparse categorical cross-entropy and accuracy."""
    model.compile(
        optimizer=make_optimizer(cfg),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=cfg.steps_per_execution,
    )


def as_features(x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(n, 28, 28) -> the model's input shape; (n, 784) for flat models is a view, not a copy."""
    return x.reshape((x.shape[0], *input_shape(cfg)))


def fit_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    on_epoch_end: Sequence[EpochHook] = (),
    verbose: str | int = "auto",
) -> dict[str, list[float]]:
    """Fit on train, validate on val each epoch; return the per-epoch history."""
    import keras

    hooks = [
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, h=h: h(epoch + 1, logs))
        for h in on_epoch_end
    ]
    history = model.fit(
        *train,
        validation_data=val,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        validation_batch_size=VAL_BATCH_SIZE,
        callbacks=[keras.callbacks.TerminateOnNaN(), *hooks],
        verbose=verbose,
    )
    check_converged(history.history["loss"], cfg)
    return {k: [float(v) for v in history.history[k]] for k in HISTORY_KEYS}


def check_converged(losses: Sequence[float], cfg: TrainConfig) -> None:
    """A loss that became NaN or infinite is a failed training, never a model to register."""
    for epoch, loss in enumerate(losses, start=1):
        if not np.isfinite(loss):
            raise TrainingError(
                f"training diverged: loss {loss} at epoch {epoch} "
                f"({cfg.optimizer}, learning_rate {cfg.learning_rate}); lower train.learning_rate"
            )
