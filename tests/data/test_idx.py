import numpy as np
import pytest

from fmnist.data.idx import check_pair, parse_idx
from fmnist.process.errors import DataIntegrityError
from tests.conftest import encode_idx, synthetic_images


def test_round_trip() -> None:
    images, labels = synthetic_images(20)
    assert np.array_equal(parse_idx(encode_idx(images), ndim=3), images)
    assert np.array_equal(parse_idx(encode_idx(labels), ndim=1), labels)


def test_wrong_magic() -> None:
    data = bytearray(encode_idx(np.zeros(3, np.uint8)))
    data[2] = 0x0D  # float instead of unsigned byte
    with pytest.raises(DataIntegrityError, match="bad magic number 0x00000d01"):
        parse_idx(bytes(data), ndim=1)


def test_wrong_dimensions() -> None:
    with pytest.raises(DataIntegrityError, match="bad magic number"):
        parse_idx(encode_idx(np.zeros(3, np.uint8)), ndim=3)


def test_truncated() -> None:
    data = encode_idx(np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(DataIntegrityError, match="truncated or padded"):
        parse_idx(data[:-10], ndim=3)
    with pytest.raises(DataIntegrityError, match="too short"):
        parse_idx(data[:6], ndim=3)


def test_count_mismatch() -> None:
    images, labels = synthetic_images(10)
    with pytest.raises(DataIntegrityError, match="10 images but 9 labels"):
        check_pair(images, labels[:9], "x")


def test_wrong_image_size_and_label_range() -> None:
    with pytest.raises(DataIntegrityError, match="expected 28x28"):
        check_pair(np.zeros((2, 27, 28), np.uint8), np.zeros(2, np.uint8), "x")
    with pytest.raises(DataIntegrityError, match="label 12 is outside"):
        check_pair(np.zeros((2, 28, 28), np.uint8), np.array([1, 12], np.uint8), "x")
