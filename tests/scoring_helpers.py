"""For scoring tests: a registered @champion (a small Keras model trained on synthetic data,
logged as the real self-contained pyfunc, in a fresh sqlite store: about 20 s), real
Fashion-MNIST test images, and PNG files of them in every bit depth and colour mode."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.data import prepare as prepare_stage
from fmnist.data.splits import load_split
from fmnist.params.config import Params, parse_params
from fmnist.registry import register as register_stage
from fmnist.training import evaluate as evaluate_stage
from fmnist.training import train as train_stage
from tests.conftest import SHARED_DATA, synthetic_images, write_raw

MODEL_NAME = "fashion-mnist"


@dataclass(frozen=True)
class Champion:
    tracking_uri: str
    params_file: Path  # a params.yaml whose promotion rule let the tiny model through
    keras_file: Path
    pixels: np.ndarray  # (100, 28, 28) uint8 synthetic test images


def register_champion(base: Path) -> Champion:
    """Prepare, train, evaluate and register (min_accuracy 0: it becomes @champion)."""
    params = parse_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "steps_per_execution": 4, "seed": 7},
            "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
            "register": {"min_accuracy": 0.0},
        }
    )
    arrays = {"train": synthetic_images(300, seed=1), "test": synthetic_images(100, seed=2)}
    prepared = base / "prepared"
    prepare_stage.run(params, write_raw(base / "raw", arrays), prepared)
    uri = f"sqlite:///{base / 'mlflow.db'}"
    train = train_evaluate_register(params, prepared, base / "models", uri)
    params_file = base / "params.yaml"
    params_file.write_text("register:\n  min_accuracy: 0.0\n")
    pixels, _ = load_split(prepared / "test.npz")
    return Champion(uri, params_file, train.model, pixels)


def train_evaluate_register(
    params: Params, prepared: Path, out: Path, uri: str
) -> train_stage.TrainOutputs:
    """The train, evaluate and register stages into out/; the version must become @champion."""
    train = train_stage.TrainOutputs(
        out / "model.keras", out / "summary.txt", out / "trained.json",
        out / "history.csv", out / "train.json",
    )  # fmt: skip
    train_stage.run(params, prepared, train, uri, out)
    evaluate = evaluate_stage.EvaluateOutputs(
        out / "evaluate.json", out / "classes.json", out / "confusion.csv", out / "confusion.png"
    )
    evaluate_stage.run(params, train.model, prepared, train.trained, evaluate, uri)
    record = register_stage.run(
        params, train.trained, evaluate.metrics, train.summary, out / "registered.json", uri
    )
    assert record["promoted"], record
    return train


def real_test_images(n: int) -> np.ndarray:
    """The first n Fashion-MNIST test images, (n, 28, 28) uint8 (skips without a local copy)."""
    from fmnist.data.idx import parse_idx

    for folder in (os.environ.get("FMNIST_DATA_MIRROR"), str(SHARED_DATA),
                   "/usr/share/datasets/fashion-mnist"):  # fmt: skip
        path = Path(folder or "", "t10k-images-idx3-ubyte.gz")
        if folder and path.is_file():
            return parse_idx(gzip.decompress(path.read_bytes()), ndim=3)[:n]
    pytest.skip("no local copy of the Fashion-MNIST test images (set FMNIST_DATA_MIRROR)")


# PNG forms whose conversion to 8-bit grayscale is exact for any 8-bit image.
PNG_FORMS = ("L", "I;16", "RGB", "RGB;16", "P", "RGBA", "LA")


def save_png(pixels: np.ndarray, form: str, path: Path) -> Path:
    """(28, 28) uint8 as a PNG of the given form: 16-bit ones hold v * 257, colour ones gray,
    alpha ones opaque, the palette one 256 grays."""
    if form == "I;16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path)  # Pillow: 16-bit grayscale
    elif form == "RGB;16":  # Pillow writes no 16-bit colour PNG: encoded here
        rgb = np.repeat(pixels.astype(">u2")[..., None] * 257, 3, axis=-1)
        path.write_bytes(raw_png(pixels.shape[1], pixels.shape[0], 16, 2, rgb.tobytes()))
    elif form == "RGB":
        Image.fromarray(np.repeat(pixels[..., None], 3, axis=-1)).save(path)
    else:
        Image.fromarray(pixels).convert(form).save(path)  # L, P (gray palette), RGBA, LA
    return path


def raw_png(width: int, height: int, bit_depth: int, color_type: int, data: bytes) -> bytes:
    """A PNG file holding data (rows of raw samples, unfiltered) as it says in its header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = len(data) // height if height else 0
    rows = b"".join(b"\0" + data[i * row : (i + 1) * row] for i in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(rows)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
