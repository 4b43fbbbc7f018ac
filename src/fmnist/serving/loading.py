"""A registered version, loaded to answer: by its number, with the `fmnist_model` it shipped
with, warmed up before requests come; and `fmnist predict`."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.pipeline import records
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
    aliases: tuple[str, ...] = ()

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
    """The model being served: a request reads `current` once, so one version answers it."""

    def __init__(self, served: ServedModel) -> None:
        self.current = served  # no lock: one attribute read is atomic, one thread swaps

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve `served` from the next request on; return the model it replaces."""
        previous, self.current = self.current, served
        return previous


def load_champion(tracking_uri: str, name: str, version: int | None = None) -> ServedModel:
    """Version `version` (None: @champion's), loaded by its number, with its lineage and aliases."""
    from fmnist.registry.versions import champion_version, client_for
    from fmnist.tracking.mlflow_store import mlflow_errors

    # by its number: the alias cannot move meanwhile
    number = version if version is not None else champion_version(tracking_uri, name)
    with mlflow_errors(f"models:/{name}/{number}"):  # the entry first: its error names the version
        found = client_for(tracking_uri).get_model_version(name, str(number))
    return replace(
        load_version(tracking_uri, name, number),
        run_id=str(found.run_id),
        data_version=str(found.tags.get(records.VERSION_DATA_TAG, "")),
        aliases=tuple(sorted(found.aliases)),
    )


def _shipped_modules() -> dict[str, ModuleType]:
    return {n: m for n, m in list(sys.modules.items()) if n.partition(".")[0] == SHIPPED_PACKAGE}


def load_version(
    tracking_uri: str, name: str, version: int, dst_path: Path | None = None
) -> ServedModel:
    """A registered version, loaded (its artifacts downloaded into dst_path, if given) with its
    own `fmnist_model` (MLflow's `code/`) imported afresh; the process gets its own modules back.
    Python imports a package once: an already imported copy would silently serve (a rollback:
    old weights, today's preprocessing)."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from fmnist.tracking.mlflow_store import open_store

    open_store(tracking_uri)
    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)  # MLflow downloads only into a folder
    uri = f"models:/{name}/{version}"
    with _loading:
        own, path = _shipped_modules(), list(sys.path)
        for module in own:
            del sys.modules[module]
        try:
            model = mlflow.pyfunc.load_model(uri, dst_path=dst_path and str(dst_path))
        except MlflowException as exc:
            raise TrackingError(f"{uri}: {first_line(exc)}") from None
        except (OSError, ValueError) as exc:  # Keras' own: a missing or broken model file
            raise TrackingError(f"{uri}: {type(exc).__name__}: {first_line(exc)}") from None
        finally:
            for module in _shipped_modules():  # the version's: its model holds them
                del sys.modules[module]
            sys.modules.update(own)
            sys.path[:] = path  # MLflow prepended the version's code/ folder
    return ServedModel(name, version, model)


def warm_up(served: ServedModel) -> None:
    """One, then two black images through the version: Keras compiles its prediction for any
    batch size once, not on each of concurrent first requests."""
    for n in (1, 2):
        answer = served.predict(np.zeros((n, 28, 28), dtype=np.uint8))  # (n, 12)
        if len(answer) != n:
            raise ValueError(f"v{served.version} answered {len(answer)} rows for {n} images")


def run_predict(
    params: Params, images: list[Path], tracking_uri: str, version: int | None = None
) -> tuple[ServedModel, list[dict[str, Any]]]:
    """Classify image files with version `version` (None: the champion's): it, a row per file."""
    from fmnist.serving.image_files import read_image

    read = [read_image(path) for path in images]  # bad files: one line, before any loading
    served = load_champion(tracking_uri, params.register_.model_name, version)
    table = served.predict(np.stack([pixels for pixels, _ in read]))
    rows = [
        {
            "image": str(path),
            "label": table["label"][i],
            "probability": float(table[table["label"][i]][i]),
            "note": note,
        }
        for i, (path, (_, note)) in enumerate(zip(images, read, strict=True))
    ]
    return served, rows
