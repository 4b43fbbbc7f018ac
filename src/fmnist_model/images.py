"""Fashion-MNIST images: their shape, class names, scaling, and the raw-pixel contract."""

from __future__ import annotations

from typing import Any

import numpy as np

IMAGE_SHAPE = (28, 28)
FLAT_SIZE = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # 784
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
KIND_NAMES = {"b": "boolean", "U": "text", "S": "bytes", "O": "mixed or text", "c": "complex"}
INPUT_FORMS = (
    "(n, 784): raw pixels 0-255, one row per image (28x28 row-major, as in the IDX files)",
    "(n, 28, 28): raw pixels 0-255, one 28x28 array per image (as keras' load_data gives)",
)


def scale_images(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 -> float32 in [0, 1]; bit-equal to float32(images / 255.0)."""
    # Division is correctly rounded in float32, and float64 -> float32 double rounding is
    # exact for division (53 >= 2 * 24 + 2 bits), so this equals the tutorial's x / 255.0.
    return images.astype(np.float32) / np.float32(255.0)


def check_pixels(values: Any) -> np.ndarray:
    """Validated raw images: (n, 784) or (n, 28, 28) numbers in [0, 255] -> (n, 28, 28) uint8;
    else ValueError, one short line that never echoes the values."""
    try:
        x = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError("pixels must be an array of numbers (ragged or mixed input)") from None
    if x.dtype.kind not in "iuf":
        kind = KIND_NAMES.get(x.dtype.kind, str(x.dtype))
        raise ValueError(f"pixels must be numbers 0-255, got {kind} values")
    if x.ndim == 1 and x.size == FLAT_SIZE:
        x = x[None, :]
    if not (x.ndim == 2 and x.shape[1] == FLAT_SIZE) and x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"each image must have 784 pixels or be 28x28, got shape {x.shape}")
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 255):
        raise ValueError("pixel values must lie in 0-255 (raw, unscaled)")
    if x.dtype.kind == "f" and x.size and not np.array_equal(x, np.rint(x)):
        raise ValueError("pixel values must be whole numbers 0-255 (raw, unscaled)")
    return x.reshape(-1, *IMAGE_SHAPE).astype(np.uint8)


def model_features(images: np.ndarray, input_rank: int) -> np.ndarray:
    """Scaled features in the model's own input form: flat (n, 784) or image (n, 28, 28)."""
    x = scale_images(images)  # (n, 28, 28) float32 in [0, 1]
    return x.reshape(len(x), FLAT_SIZE) if input_rank == 2 else x


def prediction_table(probabilities: np.ndarray) -> dict[str, list[Any]]:
    """(n, 10) probabilities -> columns: class id, class name, one probability per class."""
    ids = probabilities.argmax(axis=1)
    columns = {name: [float(p) for p in probabilities[:, k]] for k, name in enumerate(CLASS_NAMES)}
    return {"class_id": [int(i) for i in ids], "label": [CLASS_NAMES[i] for i in ids], **columns}
