"""Image files as the model's input: any image Pillow reads -> (28, 28) uint8 on Fashion-MNIST's
scale (0 the black background); images over MAX_PIXELS are refused before they are decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.process.errors import DataIntegrityError, first_line
from fmnist_model.images import IMAGE_SHAPE

MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # 16.8 million: 64 MiB as 32-bit RGBA, far past any use here
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PNG's 16-bit grayscale (I: older Pillow)
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def read_image(path: Path) -> tuple[np.ndarray, str | None]:
    """An image file as (28, 28) uint8 grayscale 0-255 (Lanczos-resized), and a note if resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns past 89 M pixels and refuses past 179 M; both are too large here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise DataIntegrityError(
                        f"{path}: {width}x{height} is too large (at most {MAX_PIXELS:,} pixels, "
                        f"{MAX_SIDE}x{MAX_SIDE}); scale it down first"
                    )
                gray = grayscale(path, image)  # (h, w) uint8
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: no such image") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataIntegrityError(f"{path}: too large (over {MAX_SIDE}x{MAX_SIDE} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow's own errors for broken files: OSError (truncated, bad zlib data), ValueError
        # (an oversized text chunk), SyntaxError (a bad chunk checksum), EOFError.
        why = first_line(exc)
        raise DataIntegrityError(f"{path}: not an image Pillow can read ({why})") from None
    if gray.shape == IMAGE_SHAPE:
        return gray, None
    height, width = gray.shape
    resized = Image.fromarray(gray).resize(IMAGE_SHAPE[::-1], Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8), f"resized from {width}x{height} to 28x28"


def grayscale(path: Path, image: Any) -> np.ndarray:
    """A Pillow image of any mode -> (h, w) uint8 grayscale 0-255: 8-bit and lower as Pillow
    expands it, colour by luma (`convert("L")`), 16-bit scaled (Pillow's own conversion clips
    at 255), transparency over black, Fashion-MNIST's background (on white, a cut-out would
    be a bright box)."""
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)  # (h, w) 0-65535
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataIntegrityError(f"{path}: 32-bit pixel values outside 0-65535")
        return ((values * 255 + 32767) // 65535).astype(np.uint8)  # rounded: v * 257 -> v
    if image.mode == "F":
        raise DataIntegrityError(f"{path}: floating-point pixels; save it as 8 or 16-bit")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        luma = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.uint32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint32)
        return ((luma * alpha + 127) // 255).astype(np.uint8)  # over black; opaque: unchanged
    return np.asarray(image.convert("L"), dtype=np.uint8)
