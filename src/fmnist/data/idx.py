"""The IDX format of the MNIST family, parsed with every header field checked."""

from __future__ import annotations

import numpy as np

from fmnist.process.errors import DataIntegrityError
from fmnist_model.images import IMAGE_SHAPE

_UBYTE = 0x08


def parse_idx(data: bytes, *, ndim: int, source: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes holding unsigned bytes of `ndim` dimensions into a read-only array."""
    magic, header = bytes([0, 0, _UBYTE, ndim]), 4 + 4 * ndim
    if len(data) >= 4 and data[:4] != magic:
        raise DataIntegrityError(
            f"{source}: bad magic number 0x{data[:4].hex()}, "
            f"expected 0x{magic.hex()} (unsigned bytes, {ndim} dimensions)"
        )
    if len(data) < header:
        raise DataIntegrityError(f"{source}: {len(data)} bytes is too short for an IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataIntegrityError(
            f"{source}: header says shape {shape} ({expected} bytes) but the file has "
            f"{len(data)} bytes (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_pair(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    """Images must be (n, 28, 28) and labels (n,) with classes 0..9."""
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataIntegrityError(f"{source}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataIntegrityError(f"{source}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and int(labels.max()) > 9:
        raise DataIntegrityError(f"{source}: label {int(labels.max())} is outside 0..9")
