"""Compile and fit: arrays and config in, a trained model and its history out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fmnist.params.config import TrainConfig
from fmnist.process.errors import TrainingError
from fmnist.training.model import N_CLASSES

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

EpochHook = Callable[[int, Mapping[str, float]], None]
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
VAL_BATCH_SIZE = 1024  # evaluation only: a larger batch is faster and changes no result


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend: the same params give the same run."""
    from fmnist.process.imports import load_keras

    load_keras().utils.set_random_seed(seed)


def make_optimizer(cfg: TrainConfig, train_rows: int) -> keras.optimizers.Optimizer:
    """The optimizer named in params, at cfg.learning_rate or decaying from it (cosine)."""
    import keras

    rate: float | keras.optimizers.schedules.LearningRateSchedule = cfg.learning_rate
    if cfg.schedule == "cosine":
        total = cfg.epochs * -(-train_rows // cfg.batch_size)  # the last batch may be short
        rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total)
    extra = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    names = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam"}
    return getattr(keras.optimizers, names[cfg.optimizer])(learning_rate=rate, **extra)


def compile_model(model: keras.Model, cfg: TrainConfig, train_rows: int) -> None:
    """The tutorial's compile (train_rows: what a cosine schedule spreads over)."""
    model.compile(
        optimizer=make_optimizer(cfg, train_rows),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=cfg.steps_per_execution,
    )


def pixel_batches(
    pixels: np.ndarray,
    labels: np.ndarray,
    input_shape: tuple[int | None, ...],
    batch_size: int,
    shuffle: bool,
) -> tf.data.Dataset:
    """Batches of (pixels / 255 in the model's input shape, labels): scale_images(pixels) bit for
    bit, the data kept uint8. With shuffle, a new permutation of all rows every epoch, repeatably
    under a seed (Keras' own array input, seeded, repeats one permutation)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(pixels)
    y = tf.convert_to_tensor(labels)
    n = int(pixels.shape[0])
    shape = (-1, *input_shape[1:])  # a model's input_shape: (None, 784) or (None, 28, 28)

    def gather(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scaled = tf.cast(tf.gather(x, rows), tf.float32) / 255.0
        return tf.reshape(scaled, shape), tf.gather(y, rows)

    rows = tf.data.Dataset.range(n)
    if shuffle:
        rows = rows.shuffle(n, reshuffle_each_iteration=True)
    options = tf.data.Options()
    # Plain pipeline, as Keras' own array input has it: no graph rewrites (they copy the
    # captured arrays: +13 MiB). And no autotuning: its background thread held up the end of
    # an epoch by ~0.45 s in about one epoch in three here (5 epochs: 4.2-4.7 s without it,
    # 4.6-5.7 s with it); one gather of a batch is cheap, a fixed prefetch keeps it overlapped.
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return rows.batch(batch_size).map(gather).prefetch(2).with_options(options)


def training_batches(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    model: keras.Model,
    cfg: TrainConfig,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(shuffled train batches, val batches) from (uint8 pixels (n, 28, 28), labels) pairs."""
    return (
        pixel_batches(*train, model.input_shape, cfg.batch_size, shuffle=True),
        pixel_batches(*val, model.input_shape, VAL_BATCH_SIZE, shuffle=False),
    )


def fit_model(
    model: keras.Model,
    batches: tuple[tf.data.Dataset, tf.data.Dataset],
    cfg: TrainConfig,
    on_epoch_end: Sequence[EpochHook] = (),
    verbose: str | int = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, list[float]]:
    """Fit on the train batches, validate on the val batches each epoch; the history."""
    import keras

    hooks = [
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, h=h: h(epoch + 1, logs))
        for h in on_epoch_end
    ]
    train, val = batches
    history = model.fit(
        train,
        validation_data=val,
        epochs=cfg.epochs,
        shuffle=False,  # the batches shuffle themselves
        callbacks=[keras.callbacks.TerminateOnNaN(), *hooks, *callbacks],
        verbose=verbose,
    )
    check_converged(history.history["loss"], history.history.get("val_accuracy", []), cfg)
    return {k: [float(v) for v in history.history[k]] for k in HISTORY_KEYS}


CHANCE_FACTOR = 1.5  # a last val_accuracy at or below 1.5 x chance is no model


def check_converged(
    losses: Sequence[float], val_accuracies: Sequence[float], cfg: TrainConfig
) -> None:
    """A non-finite loss or a last val_accuracy at chance level is a TrainingError."""
    hint = f"({cfg.optimizer}, learning_rate {cfg.learning_rate}); lower train.learning_rate"
    for epoch, loss in enumerate(losses, start=1):
        if not np.isfinite(loss):
            raise TrainingError(f"training diverged: loss {loss} at epoch {epoch} {hint}")
    if val_accuracies and val_accuracies[-1] <= CHANCE_FACTOR * (1 / N_CLASSES):
        raise TrainingError(
            f"training diverged: val_accuracy {val_accuracies[-1]:.4f} after epoch "
            f"{len(val_accuracies)} is chance level (<= {CHANCE_FACTOR} x 1/{N_CLASSES}) {hint}"
        )
