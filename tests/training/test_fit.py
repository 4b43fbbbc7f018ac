"""Training on a few hundred synthetic images: loss falls, seeds reproduce, optimizers build."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.params.config import LayerConfig, ModelConfig, TrainConfig
from fmnist.process.errors import TrainingError
from fmnist.training.fit import (
    compile_model,
    fit_model,
    make_optimizer,
    pixel_batches,
    seed_everything,
    training_batches,
)
from fmnist.training.model import build_model
from fmnist_model.images import scale_images
from tests.conftest import synthetic_images

SMALL_MODEL = ModelConfig(hidden=(LayerConfig(units=32, activation="relu"),))


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_images(n, seed=seed)  # uint8 pixels, as the train stage feeds them


def train_once(cfg: TrainConfig, epochs_seen: list | None = None) -> dict[str, list[float]]:
    seed_everything(cfg.seed)
    model = build_model(SMALL_MODEL)
    compile_model(model, cfg, train_rows=400)
    hooks = (
        [lambda epoch, logs: epochs_seen.append((epoch, dict(logs)))]
        if epochs_seen is not None
        else []
    )
    batches = training_batches(data(400, 1), data(100, 2), model, cfg)
    return fit_model(model, batches, cfg, on_epoch_end=hooks, verbose=0)


@pytest.mark.slow  # Keras/TensorFlow
def test_loss_falls_and_hooks_see_every_epoch() -> None:
    seen: list = []
    cfg = TrainConfig(
        epochs=4, batch_size=20, steps_per_execution=5, optimizer="adam", learning_rate=0.01
    )
    history = train_once(cfg, seen)
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.5
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4]
    assert set(seen[0][1]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.slow  # Keras/TensorFlow
def test_same_seed_same_metrics() -> None:
    cfg = TrainConfig(epochs=2, batch_size=20, steps_per_execution=5, seed=3)
    assert train_once(cfg) == train_once(cfg)


@pytest.mark.slow  # Keras/TensorFlow
def test_other_seed_other_metrics() -> None:
    base = TrainConfig(epochs=1, batch_size=20, steps_per_execution=5, seed=3)
    assert train_once(base) != train_once(base.model_copy(update={"seed": 4}))


@pytest.mark.slow  # Keras/TensorFlow
@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", "SGD"), ("adagrad", "Adagrad"), ("rmsprop", "RMSprop"), ("adam", "Adam")],
)
def test_optimizers(name: str, cls: str) -> None:
    opt = make_optimizer(TrainConfig(optimizer=name, learning_rate=0.05, momentum=0.5), 100)
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.05)
    if name == "sgd":
        assert opt.momentum == 0.5


@pytest.mark.slow  # Keras/TensorFlow
@pytest.mark.parametrize("form", ["flat", "image"])
def test_pixel_batches_feed_exactly_the_prepared_values(form: str) -> None:
    """Scaled as fed: each batch is scale_images(pixels) (the tutorial's x / 255, bit for
    bit) in the model's input shape; unshuffled batches keep row order, the last one partial."""
    pixels, labels = synthetic_images(70, seed=5)
    model = build_model(ModelConfig(input=form))
    batches = pixel_batches(pixels, labels, model.input_shape, batch_size=32, shuffle=False)
    assert int(batches.cardinality()) == 3  # known: Keras' progress bar shows 1/3, 2/3, ...
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in batches], strict=True)
    assert [len(y) for y in ys] == [32, 32, 6]
    x = np.concatenate(xs)
    assert x.dtype == np.float32 and x.shape[1:] == model.input_shape[1:]
    assert np.array_equal(x.reshape(70, 28, 28), scale_images(pixels))
    assert np.array_equal(np.concatenate(ys), labels)


def shuffled_orders(seed: int, epochs: int) -> list[list[int]]:
    """The row order pixel_batches feeds in each epoch (rows tagged with their index)."""
    pixels, labels = synthetic_images(64, seed=6)
    pixels[:, 0, 0] = np.arange(64)
    seed_everything(seed)
    batches = pixel_batches(pixels, labels, (None, 784), 16, shuffle=True)
    return [
        [int(v) for x, _ in batches for v in np.rint(x.numpy()[:, 0] * 255)] for _ in range(epochs)
    ]


@pytest.mark.slow  # Keras/TensorFlow
def test_pixel_batches_shuffle_all_rows_anew_each_epoch_and_repeatably() -> None:
    first, second = shuffled_orders(seed=1, epochs=2)
    assert sorted(first) == sorted(second) == list(range(64))
    assert first != second != list(range(64))  # a new permutation every epoch
    assert shuffled_orders(seed=1, epochs=2) == [first, second]  # the same ones under a seed
    assert shuffled_orders(seed=2, epochs=1) != [first]


@pytest.mark.slow  # Keras/TensorFlow
def test_a_diverged_training_is_an_error_not_a_model() -> None:
    from fmnist.process.errors import TrainingError

    cfg = TrainConfig(epochs=2, batch_size=20, optimizer="sgd", learning_rate=1e30)
    with pytest.raises(TrainingError, match=r"training diverged: loss nan at epoch 1 .*sgd"):
        train_once(cfg)


def test_check_converged_accepts_finite_losses_above_chance() -> None:
    from fmnist.training.fit import check_converged

    check_converged([2.3, 1.1, 0.7], [0.5, 0.7, 0.8], TrainConfig())
    check_converged([2.3], [0.151], TrainConfig())  # just above 1.5 x chance
    with pytest.raises(TrainingError, match="loss inf at epoch 3"):
        check_converged([2.3, 1.1, float("inf")], [0.5, 0.6, 0.7], TrainConfig())


def test_a_training_that_ends_at_chance_level_is_diverged() -> None:
    from fmnist.training.fit import check_converged

    cfg = TrainConfig(optimizer="sgd", learning_rate=10.0)
    with pytest.raises(
        TrainingError,
        match=r"^training diverged: val_accuracy 0\.1000 after epoch 2 is chance level "
        r"\(<= 1\.5 x 1/10\) \(sgd, learning_rate 10\.0\); lower train\.learning_rate$",
    ):
        check_converged([2.3, 2.3], [0.4, 0.1], cfg)
    with pytest.raises(TrainingError, match="chance level"):
        check_converged([2.3], [0.15], cfg)  # at 1.5 x chance: still no model


@pytest.mark.slow  # Keras/TensorFlow
def test_cosine_schedule_decays_to_zero_over_every_step_of_the_training() -> None:
    import keras

    cfg = TrainConfig(
        optimizer="adam", learning_rate=0.01, schedule="cosine", epochs=4, batch_size=10
    )
    opt = make_optimizer(cfg, train_rows=95)  # 10 steps an epoch (the last short), 40 in all
    schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(20)) == pytest.approx(0.005)
    assert float(schedule(40)) == pytest.approx(0.0, abs=1e-9)
    assert float(opt.learning_rate) == pytest.approx(0.01)  # the rate at step 0
    constant = make_optimizer(cfg.model_copy(update={"schedule": "constant"}), 95)
    assert constant.get_config()["learning_rate"] == pytest.approx(0.01)
