"""The raw-pixel contract of the served model: both image forms in, one line for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fmnist_model.images import CLASS_NAMES, check_pixels, model_features, prediction_table


def test_both_image_forms_are_accepted_as_uint8() -> None:
    flat = np.arange(2 * 784).reshape(2, 784) % 256
    assert check_pixels(flat).shape == (2, 28, 28)
    assert check_pixels(flat.reshape(2, 28, 28).astype(np.float64)).dtype == np.uint8
    assert check_pixels(flat[0].tolist()).shape == (1, 28, 28)  # one image, 784 values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros((2, 783)), "784 pixels or be 28x28"),
        (np.zeros((2, 27, 28)), "784 pixels or be 28x28"),
        (np.full((1, 784), 256), "0-255"),
        (np.full((1, 784), -1), "0-255"),
        (np.full((1, 784), np.nan), "0-255"),
        (np.full((1, 784), 0.5), "whole numbers"),
        (np.array([["a"] * 784]), "numbers 0-255, got text"),
        (np.ones((1, 784), dtype=bool), "numbers 0-255, got boolean"),
        (np.array([[1, "2"] * 392], dtype=object), "numbers 0-255, got mixed"),
        ([[0] * 784, [0] * 783], "ragged or mixed"),
    ],
)
def test_bad_pixels_are_one_clear_line(values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_pixels(values)


def test_features_are_the_training_scaling_in_the_models_form() -> None:
    images = np.full((3, 28, 28), 255, dtype=np.uint8)
    assert model_features(images, 2).shape == (3, 784)
    assert model_features(images, 3).shape == (3, 28, 28)
    assert model_features(images, 2).max() == np.float32(1.0)


def test_prediction_table_names_each_class() -> None:
    probabilities = np.eye(10, dtype=np.float32)[[9, 0]]
    table = prediction_table(probabilities)
    assert table["class_id"] == [9, 0]
    assert table["label"] == ["Ankle boot", "T-shirt/top"]
    assert set(CLASS_NAMES) <= set(table)
