"""A batch to score, read whole and checked before anything is written: a folder of images, an
IDX images file (its labels file beside it too), or a `.npz` of raw pixels (`x`, `y` optional).
Its digest is the hash DVC gives the path, so it matches `dvc add`-ed data."""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist.data.idx import check_pair, parse_idx
from fmnist.process.errors import DataIntegrityError
from fmnist.process.files import file_digest
from fmnist_model.images import check_pixels

MAX_IDX_BYTES = 1 << 30  # a decompressed IDX file past 1 GiB (1.3 M images) is refused
IDX_IMAGES, IDX_LABELS = "-images-idx3-ubyte", "-labels-idx1-ubyte"


@dataclass(frozen=True)
class Batch:
    pixels: np.ndarray  # (n, 28, 28) uint8 raw pixels
    names: list[str]  # one per image: its file, or `<file>#<row>`
    source: str  # the path as given, resolved
    digest: str  # DVC's hash of that path
    kind: str  # "images", "idx" or "npz"
    labels: np.ndarray | None = None  # (n,) when the input carries them: scoring's accuracy


def read_batch(path: Path) -> Batch:
    """The batch at PATH (folder, IDX file or .npz), checked."""
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise DataIntegrityError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        return _read_npz(path)
    return _read_idx(path)


def _read_folder(folder: Path) -> Batch:
    from fmnist.pipeline.lineage import dir_md5
    from fmnist.serving.image_files import read_image

    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if folders := [e for e in entries if not e.is_file()]:
        raise DataIntegrityError(f"{folders[0]}: a folder inside the batch (mixed input)")
    if not entries:
        raise DataIntegrityError(f"{folder}: no images in the folder")
    pixels = np.stack([read_image(p)[0] for p in entries])  # names the file it cannot read
    return Batch(
        pixels, [p.name for p in entries], str(folder.resolve()), dir_md5(folder), "images"
    )


def _read_npz(path: Path) -> Batch:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise DataIntegrityError(
                    f"{path}: expected an array `x` of raw pixels (found {', '.join(names)})"
                )
            x = archive[key]
            y = archive["y"] if "y" in names and key == "x" else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataIntegrityError(f"{path}: not a .npz of raw pixels ({exc})") from None
    try:
        pixels = check_pixels(x)
    except ValueError as exc:
        raise DataIntegrityError(f"{path}: `{key}`: {exc}") from None
    if len(pixels) == 0:
        raise DataIntegrityError(f"{path}: no images in `{key}`")
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (len(pixels),):
            raise DataIntegrityError(
                f"{path}: `y` is {y.dtype} {y.shape}, expected ({len(pixels)},)"
            )
        check_pair(pixels, y, str(path))
        y = y.astype(np.uint8)
    names = [f"{path.name}#{i}" for i in range(len(pixels))]
    return Batch(pixels, names, str(path.resolve()), file_digest(path), "npz", y)


def _read_idx(path: Path) -> Batch:
    images = parse_idx(_idx_bytes(path), ndim=3, source=str(path))
    if len(images) == 0:
        raise DataIntegrityError(f"{path}: no images in the file")
    labels = None
    labels_path = path.with_name(path.name.replace(IDX_IMAGES, IDX_LABELS))
    if labels_path != path and labels_path.is_file():
        labels = parse_idx(_idx_bytes(labels_path), ndim=1, source=str(labels_path))
    check_pair(images, labels if labels is not None else np.zeros(len(images), np.uint8), str(path))
    names = [f"{path.name}#{i}" for i in range(len(images))]
    return Batch(np.array(images), names, str(path.resolve()), file_digest(path), "idx", labels)


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if gzip (at most MAX_IDX_BYTES)."""
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataIntegrityError(f"{path}: not a readable IDX or .gz file ({exc})") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataIntegrityError(f"{path}: over {MAX_IDX_BYTES >> 20} MiB decompressed")
    return data
