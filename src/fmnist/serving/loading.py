"""A registered version, loaded to answer: by its number, with the `fmnist_model` it shipped
with, warmed up before requests come; and `fmnist predict`."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.process.errors import TrackingError, first_line
from fmnist_model.images import CLASS_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from fmnist.params.config import Params

SHIPPED_PACKAGE = "fmnist_model"  # what every version carries in its code/
_loading = threading.Lock()  # one load at a time: sys.modules and sys.path are the process's


@dataclass(frozen=True)
class ServedModel:
    """One registered version, loaded: it predicts and says which version it is."""

    name: str
    version: int
    model: Any  # mlflow.pyfunc.PyFuncModel
    run_id: str = ""  # the training run it came from (batch scoring's lineage)
    data_version: str = ""  # DVC's hash of the data/prepared it was trained on (version tag)

    def predict(self, pixels: np.ndarray) -> pd.DataFrame:
        """Raw pixels -> class id, label, ten probabilities."""
        return self.model.predict(pixels)

    def probabilities(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """(n, 28, 28) uint8 -> (n, 10) probabilities, batch_size images per call."""
        parts = [
            self.predict(pixels[i : i + batch_size])[list(CLASS_NAMES)].to_numpy()
            for i in range(0, len(pixels), batch_size)
        ]
        return np.concatenate(parts).astype(np.float64)


class ModelHolder:
    """The model being served: a request reads `current` once, so it predicts with, and
    reports, one version even if a swap comes meanwhile."""

    def __init__(self, served: ServedModel) -> None:
        self.current = served  # readers need no lock: one attribute read is atomic
        self._swapping = threading.Lock()

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve `served` from the next request on; return the model it replaces."""
        with self._swapping:  # two swappers cannot both return the same previous model
            previous, self.current = self.current, served
        return previous


def load_champion(tracking_uri: str, name: str) -> ServedModel:
    """The version holding @champion, loaded by its number (the alias cannot move meanwhile)."""
    from fmnist.registry.versions import champion_version

    return load_version(tracking_uri, name, champion_version(tracking_uri, name))


def _shipped_modules() -> dict[str, ModuleType]:
    return {
        name: module
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] == SHIPPED_PACKAGE
    }


@contextlib.contextmanager
def shipped_code() -> Iterator[None]:
    """Load a version inside: its own `fmnist_model` (MLflow's `code/`) is imported afresh, then
    the process gets its own modules back. Python imports a package once, so an already
    imported copy would silently serve (a rollback: old weights, today's preprocessing)."""
    with _loading:
        own = _shipped_modules()
        path = list(sys.path)
        for name in own:
            del sys.modules[name]
        try:
            yield
        finally:
            for name in _shipped_modules():  # the version's: its model holds them
                del sys.modules[name]
            sys.modules.update(own)
            sys.path[:] = path  # MLflow prepended the version's code/ folder


def load_version(
    tracking_uri: str, name: str, version: int, dst_path: Path | None = None
) -> ServedModel:
    """A registered version, loaded (its artifacts downloaded into dst_path, if given)."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from fmnist.tracking.mlflow_store import open_store

    open_store(tracking_uri)
    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)  # MLflow downloads only into a folder
    uri = f"models:/{name}/{version}"
    try:
        with shipped_code():
            model = mlflow.pyfunc.load_model(uri, dst_path=dst_path and str(dst_path))
    except MlflowException as exc:
        raise TrackingError(f"{uri}: {first_line(exc)}") from None
    except (OSError, ValueError) as exc:  # Keras' own: a missing or broken model file
        raise TrackingError(f"{uri}: {type(exc).__name__}: {first_line(exc)}") from None
    return ServedModel(name, version, model)


def warm_up(served: ServedModel) -> None:
    """One, then two black images through the version, so Keras has compiled its prediction
    for any batch size (concurrent first requests of a new size would each compile it again)."""
    for n in (1, 2):
        answer = served.predict(np.zeros((n, 28, 28), dtype=np.uint8))  # (n, 12)
        if len(answer) != n:
            raise ValueError(f"v{served.version} answered {len(answer)} rows for {n} images")


@dataclass(frozen=True)
class Predicted:
    """`fmnist predict`'s answer: which version classified the files, and one row per file."""

    name: str
    version: int
    aliases: list[str]
    rows: list[dict[str, Any]]


def run_predict(
    params: Params, images: list[Path], tracking_uri: str, version: int | None = None
) -> Predicted:
    """Classify image files with version `version` (None: the champion's)."""
    from fmnist.registry.versions import champion_version, model_version
    from fmnist.serving.image_files import read_image

    name = params.register_.model_name
    read = [read_image(path) for path in images]  # bad files: one line, before any loading
    pixels = np.stack([pixels for pixels, _ in read])  # (n, 28, 28) uint8, a form it takes
    served = load_version(tracking_uri, name, version or champion_version(tracking_uri, name))
    table = served.predict(pixels)
    rows = [
        {
            "image": str(path),
            "label": table["label"][i],
            "probability": float(table[table["label"][i]][i]),
            "note": note,
        }
        for i, (path, (_, note)) in enumerate(zip(images, read, strict=True))
    ]
    aliases = sorted(model_version(tracking_uri, name, served.version).aliases)
    return Predicted(name, served.version, aliases, rows)
