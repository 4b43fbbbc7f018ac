import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmnist.config import PrepareConfig
from fmnist.core.split import make_split, scale_images, split_indices, unscale_images
from tests.conftest import synthetic_images


def test_scaling_is_bit_equal_to_the_tutorials_float64_way() -> None:
    every_byte = np.arange(256, dtype=np.uint8).repeat(4).reshape(1, 32, 32)
    ours = scale_images(every_byte)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, (every_byte / 255.0).astype(np.float32))
    assert ours.min() == 0.0 and ours.max() == 1.0


@pytest.mark.parametrize("val_size", [0.2, 0.35])
def test_split_is_train_test_split_exactly(val_size: float) -> None:
    images, labels = synthetic_images(200, seed=5)
    cfg = PrepareConfig(val_size=val_size, seed=42)
    train_rows, val_rows = split_indices(labels, cfg)
    train, val = make_split(images, labels, train_rows), make_split(images, labels, val_rows)
    x_train, x_val, y_train, y_val = train_test_split(
        images / 255.0, labels, test_size=val_size, random_state=42
    )
    assert np.array_equal(train.x, x_train.astype(np.float32))
    assert np.array_equal(val.x, x_val.astype(np.float32))
    assert np.array_equal(train.y, y_train) and np.array_equal(val.y, y_val)
    assert train.y.dtype == np.uint8 and train.x.shape[1:] == (28, 28)


def test_stratified_split_keeps_class_shares() -> None:
    _, labels = synthetic_images(200, seed=6)
    _, val_rows = split_indices(labels, PrepareConfig(val_size=0.2, seed=1, stratify=True))
    assert np.bincount(labels[val_rows], minlength=10).tolist() == [4] * 10


def test_unscaling_gives_back_every_pixel_exactly() -> None:
    every_byte = np.arange(256, dtype=np.uint8).repeat(4).reshape(1, 32, 32)
    pixels = unscale_images(scale_images(every_byte))
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, every_byte)


@pytest.mark.parametrize("bad", [0.5, 1.5, -1 / 255, np.nan, np.nextafter(np.float32(1 / 255), 1)])
def test_unscaling_refuses_what_is_not_a_pixel_over_255(bad: float) -> None:
    scaled = scale_images(np.full((1, 28, 28), 7, np.uint8))
    scaled[0, 3, 4] = bad
    with pytest.raises(ValueError, match="not 0-255 pixels / 255"):
        unscale_images(scaled)
