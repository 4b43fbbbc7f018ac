"""Image files -> the model's 0-255 grayscale: every PNG bit depth and colour mode, sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.process.errors import DataIntegrityError
from fmnist.serving.image_files import grayscale, read_image
from tests.scoring_helpers import PNG_FORMS, raw_png, real_test_images, save_png


def _refused(path: Path) -> str:
    with pytest.raises(DataIntegrityError) as caught:
        read_image(path)
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{path}: "), line
    return line


@pytest.mark.parametrize("form", PNG_FORMS)
def test_every_png_form_of_real_images_reads_back_exactly(tmp_path: Path, form: str) -> None:
    images = real_test_images(200)
    for i, pixels in enumerate(images):
        path = save_png(pixels, form, tmp_path / f"{i}.png")
        read, note = read_image(path)
        assert note is None
        assert read.dtype == np.uint8 and np.array_equal(read, pixels), (form, i)


def test_16_bit_grayscale_is_scaled_to_0_255_not_clipped(tmp_path: Path) -> None:
    values = np.array([0, 128, 257, 32767, 32768, 65278, 65535] * 4, dtype=np.uint16)
    wide = np.resize(values, (28, 28))
    Image.fromarray(wide).save(tmp_path / "16.png")
    read, _ = read_image(tmp_path / "16.png")
    expected = np.rint(wide / 257.0).astype(np.uint8)  # 32768 -> 127.5 -> 128 (half up)
    assert np.array_equal(read, expected)
    clipped = np.asarray(Image.fromarray(wide).convert("L"))  # what Pillow alone does
    assert (clipped == 255).mean() > 0.5 and (read == 255).mean() < 0.2


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_16_bit_modes_scale_the_same(mode: str) -> None:
    wide = np.resize(np.arange(0, 65536, 257, dtype=np.uint16), (28, 28))  # v * 257, v 0-255
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (28, 28), wide.astype(">u2").tobytes())
    else:
        image = Image.fromarray(wide.astype(np.int32))
    assert image.mode == mode
    assert np.array_equal(grayscale(Path("x.png"), image), (wide // 257).astype(np.uint8))


def test_transparency_is_the_black_background(tmp_path: Path) -> None:
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :10, 3] = 0  # transparent: background
    rgba[:, 10:20, 3] = 128  # half
    rgba[:, 20:, 3] = 255  # opaque: unchanged
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    read, _ = read_image(tmp_path / "rgba.png")
    assert (read[:, :10] == 0).all() and (read[:, 10:20] == 100).all()
    assert (read[:, 20:] == 200).all()
    la = Image.fromarray(rgba).convert("LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(read_image(tmp_path / "la.png")[0], read)


def test_a_palettes_transparent_entry_is_background(tmp_path: Path) -> None:
    pixels = np.full((28, 28), 180, dtype=np.uint8)
    pixels[:, :14] = 90
    palette = Image.fromarray(pixels).convert("P")
    transparent = palette.getpixel((0, 0))  # the index the left half uses
    palette.save(tmp_path / "p.png", transparency=transparent)
    read, _ = read_image(tmp_path / "p.png")
    assert (read[:, :14] == 0).all() and (read[:, 14:] == 180).all()


def test_colour_becomes_luma(tmp_path: Path) -> None:
    rgb = np.zeros((28, 28, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: 0.299 * 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert (read_image(tmp_path / "red.png")[0] == 76).all()


def test_low_bit_depths_expand_to_0_255(tmp_path: Path) -> None:
    binary = (np.indices((28, 28)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(binary).convert("1").save(tmp_path / "1bit.png")
    assert np.array_equal(read_image(tmp_path / "1bit.png")[0], binary)
    levels = np.resize(np.array([0, 85, 170, 255], dtype=np.uint8), (28, 28))
    Image.fromarray(levels).save(tmp_path / "2bit.png", bits=2)
    assert np.array_equal(read_image(tmp_path / "2bit.png")[0], levels)


def test_other_sizes_are_resized_with_a_note(tmp_path: Path) -> None:
    Image.new("I;16", (56, 40), 65535).save(tmp_path / "big.png")
    read, note = read_image(tmp_path / "big.png")
    assert read.shape == (28, 28) and (read == 255).all()
    assert note == "resized from 56x40 to 28x28"


def test_oversized_images_are_one_line_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "wide.png").write_bytes(raw_png(5000, 5000, 8, 0, bytes(5000 * 5000)))
    assert "5000x5000 is too large (at most 16,777,216 pixels, 4096x4096)" in _refused(
        tmp_path / "wide.png"
    )
    # Past Pillow's decompression-bomb limits (89 M pixels warns, 179 M refuses): the header
    # alone says 400 M pixels; nothing is decoded.
    (tmp_path / "bomb.png").write_bytes(raw_png(20000, 20000, 8, 0, b""))
    (tmp_path / "warn.png").write_bytes(raw_png(10000, 10000, 8, 0, b""))
    for name in ("bomb.png", "warn.png"):
        assert "too large (over 4096x4096 pixels)" in _refused(tmp_path / name)


def test_broken_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("hello")
    assert "not an image Pillow can read" in _refused(tmp_path / "text.png")
    whole = save_png(real_test_images(1)[0], "L", tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    assert "not an image Pillow can read" in _refused(tmp_path / "cut.png")
    assert _refused(tmp_path / "missing.png").endswith("no such image")


def test_floating_point_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.ones((28, 28), dtype=np.float32)).save(tmp_path / "f.tiff")
    assert "floating-point pixels" in _refused(tmp_path / "f.tiff")
