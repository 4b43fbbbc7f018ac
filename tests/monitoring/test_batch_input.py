"""Reading a batch to score: folders of images, IDX files, .npz files; bad input is one line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.monitoring.batch import read_batch
from fmnist.pipeline.lineage import dir_md5
from fmnist.process.errors import DataIntegrityError
from tests.conftest import encode_idx, synthetic_images, write_gz


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_folder_of_pngs(tmp_path: Path) -> None:
    pixels, _ = synthetic_images(3, seed=1)
    folder = tmp_path / "batch"
    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"img{i}.png")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden files are not part of the batch
    batch = read_batch(folder)
    assert batch.kind == "images" and batch.names == ["img0.png", "img1.png", "img2.png"]
    assert np.array_equal(batch.pixels, pixels) and batch.labels is None
    assert batch.digest == dir_md5(folder)  # what `dvc add batch` would record


def test_an_idx_pair_gzipped_or_not(tmp_path: Path) -> None:
    pixels, labels = synthetic_images(5, seed=2)
    images = write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", encode_idx(pixels))
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", encode_idx(labels))
    batch = read_batch(images)
    assert batch.kind == "idx" and np.array_equal(batch.pixels, pixels)
    assert batch.labels is not None and np.array_equal(batch.labels, labels)
    assert batch.names[0] == "t10k-images-idx3-ubyte.gz#0" and batch.digest == md5(images)
    plain = tmp_path / "plain-images-idx3-ubyte"
    plain.write_bytes(encode_idx(pixels))
    assert np.array_equal(read_batch(plain).pixels, pixels) and read_batch(plain).labels is None


@pytest.mark.parametrize("form", ["images", "rows", "floats"])
def test_a_npz_of_raw_pixels(tmp_path: Path, form: str) -> None:
    pixels, labels = synthetic_images(4, seed=3)
    x = {"images": pixels, "rows": pixels.reshape(4, 784), "floats": pixels.astype(float)}[form]
    np.savez(tmp_path / "b.npz", x=x, y=labels)
    batch = read_batch(tmp_path / "b.npz")
    assert batch.kind == "npz" and np.array_equal(batch.pixels, pixels)
    assert batch.labels is not None and np.array_equal(batch.labels, labels)
    assert batch.digest == md5(tmp_path / "b.npz")


IDX = "in-images-idx3-ubyte"


def _write(path: Path, content: object) -> None:
    if isinstance(content, bytes | str):
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    else:
        np.savez(path, **content)  # type: ignore[arg-type]


BAD = {  # what the file holds -> the one line expected
    "in.npz: `x`: pixel values must lie in 0-255": ("in.npz", {"x": np.full((2, 28, 28), 300.0)}),
    "in.npz: `x`: each image must have 784 pixels": ("in.npz", {"x": np.zeros((2, 5))}),
    "in.npz: expected an array `x`": ("in.npz", {"a": np.zeros(1), "b": np.zeros(1)}),
    "in.npz: no images in `x`": ("in.npz", {"x": np.zeros((0, 784))}),
    "in.npz: label 11": ("in.npz", {"x": np.zeros((2, 784)), "y": np.array([1, 11])}),
    "in.npz: not a .npz of raw pixels": ("in.npz", "not a zip"),
    f"{IDX}: .*too short": (IDX, b"\0\0\x08\x03" + b"\0" * 5),
    f"{IDX}: not a readable IDX or .gz": (IDX, b"\x1f\x8bnot gzip"),
}


@pytest.mark.parametrize("message", list(BAD))
def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, message: str) -> None:
    name, content = BAD[message]
    _write(tmp_path / name, content)
    with pytest.raises(DataIntegrityError, match=message) as info:
        read_batch(tmp_path / name)
    assert "\n" not in str(info.value)
    with pytest.raises(DataIntegrityError, match="gone.npz: no such file or folder"):
        read_batch(tmp_path / "gone.npz")


def test_a_mixed_folder_names_the_file_that_is_not_an_image(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(DataIntegrityError, match=r"notes.txt: not an image Pillow can read"):
        read_batch(folder)
    (folder / "notes.txt").unlink()
    (folder / "sub").mkdir()
    with pytest.raises(DataIntegrityError, match=r"sub: a folder inside the batch"):
        read_batch(folder)
    (folder / "sub").rmdir()
    (folder / "a.png").unlink()
    with pytest.raises(DataIntegrityError, match=r"batch: no images in the folder"):
        read_batch(folder)
