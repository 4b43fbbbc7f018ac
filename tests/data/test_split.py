import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmnist.data.split import make_split, split_indices
from fmnist.params.config import PrepareConfig
from fmnist_model.images import scale_images
from tests.conftest import synthetic_images


def test_scaling_is_bit_equal_to_the_tutorials_float64_way() -> None:
    every_byte = np.arange(256, dtype=np.uint8).repeat(4).reshape(1, 32, 32)
    ours = scale_images(every_byte)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, (every_byte / 255.0).astype(np.float32))
    assert ours.min() == 0.0 and ours.max() == 1.0


@pytest.mark.parametrize("val_size", [0.2, 0.35])
def test_split_scaled_as_fed_is_the_tutorials_train_test_split_exactly(val_size: float) -> None:
    """The tutorial scales, then splits; the splits keep pixels and the model's input step
    scales them: the values the model sees are the tutorial's, bit for bit (as float32)."""
    images, labels = synthetic_images(200, seed=5)
    cfg = PrepareConfig(val_size=val_size, seed=42)
    train_rows, val_rows = split_indices(labels, cfg)
    train, val = make_split(images, labels, train_rows), make_split(images, labels, val_rows)
    x_train, x_val, y_train, y_val = train_test_split(
        images / 255.0, labels, test_size=val_size, random_state=42
    )
    assert train.x.dtype == np.uint8 and train.x.shape[1:] == (28, 28)
    assert np.array_equal(scale_images(train.x), x_train.astype(np.float32))
    assert np.array_equal(scale_images(val.x), x_val.astype(np.float32))
    assert np.array_equal(train.y, y_train) and np.array_equal(val.y, y_val)
    assert train.y.dtype == np.uint8


def test_stratified_split_keeps_class_shares() -> None:
    _, labels = synthetic_images(200, seed=6)
    _, val_rows = split_indices(labels, PrepareConfig(val_size=0.2, seed=1, stratify=True))
    assert np.bincount(labels[val_rows], minlength=10).tolist() == [4] * 10


def test_a_split_is_a_copy_not_a_view_of_the_raw_arrays() -> None:
    images, labels = synthetic_images(20, seed=7)
    whole = make_split(images, labels)
    images[0, 0, 0] ^= 0xFF
    assert whole.x[0, 0, 0] != images[0, 0, 0] and np.shares_memory(whole.y, labels) is False
