"""Training on a few hundred synthetic images: loss falls, seeds reproduce, optimizers build."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist.config import LayerConfig, ModelConfig, TrainConfig
from fmnist.model import build_model
from fmnist.train import as_features, compile_model, fit_model, make_optimizer, seed_everything
from tests.conftest import synthetic_images

SMALL_MODEL = ModelConfig(hidden=(LayerConfig(units=32, activation="relu"),))


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = synthetic_images(n, seed=seed)
    return as_features(images.astype(np.float32) / 255, SMALL_MODEL), labels


def train_once(cfg: TrainConfig, epochs_seen: list | None = None) -> dict[str, list[float]]:
    seed_everything(cfg.seed)
    model = build_model(SMALL_MODEL)
    compile_model(model, cfg)
    hooks = (
        [lambda epoch, logs: epochs_seen.append((epoch, dict(logs)))]
        if epochs_seen is not None
        else []
    )
    return fit_model(model, data(400, 1), data(100, 2), cfg, on_epoch_end=hooks, verbose=0)


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


def test_same_seed_same_metrics() -> None:
    cfg = TrainConfig(epochs=2, batch_size=20, steps_per_execution=5, seed=3)
    assert train_once(cfg) == train_once(cfg)


def test_other_seed_other_metrics() -> None:
    base = TrainConfig(epochs=1, batch_size=20, steps_per_execution=5, seed=3)
    assert train_once(base) != train_once(base.model_copy(update={"seed": 4}))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", "SGD"), ("adagrad", "Adagrad"), ("rmsprop", "RMSprop"), ("adam", "Adam")],
)
def test_optimizers(name: str, cls: str) -> None:
    opt = make_optimizer(TrainConfig(optimizer=name, learning_rate=0.05, momentum=0.5))
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.05)
    if name == "sgd":
        assert opt.momentum == 0.5


def test_flat_features_are_views() -> None:
    x = np.zeros((3, 28, 28), np.float32)
    flat = as_features(x, ModelConfig())
    assert flat.shape == (3, 784) and np.shares_memory(flat, x)


def test_a_diverged_training_is_an_error_not_a_model() -> None:
    from fmnist.errors import TrainingError

    cfg = TrainConfig(epochs=2, batch_size=20, optimizer="sgd", learning_rate=1e30)
    with pytest.raises(TrainingError, match=r"training diverged: loss nan at epoch 1 .*sgd"):
        train_once(cfg)


def test_check_converged_accepts_finite_losses() -> None:
    from fmnist.train import check_converged

    check_converged([2.3, 1.1, 0.7], TrainConfig())
    with pytest.raises(Exception, match="loss inf at epoch 3"):
        check_converged([2.3, 1.1, float("inf")], TrainConfig())
