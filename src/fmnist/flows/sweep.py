"""Prefect flow `fashion-mnist-sweep`: the tutorial's optimizer comparison in one parallel run,
an Optuna study on the grid optimizers x hidden activations run as the search is (flows.search)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from fmnist.flows.common import flow_run_label
from fmnist.flows.search import tune
from fmnist.params.config import load_params
from fmnist.params.overrides import RunOverrides, dotted_overrides
from fmnist.process import layout
from fmnist.tuning.grid import ACTIVATIONS, OPTIMIZERS, Tuning, grid


@flow(name="fashion-mnist-sweep")
def sweep(
    optimizers: list[str] = list(OPTIMIZERS),  # noqa: B006 (Prefect parameters are copied)
    activations: list[str] = list(ACTIVATIONS),  # noqa: B006
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    hidden_units: list[int] | None = None,
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """optimizers x activations, in parallel; registers the best by validation accuracy.
    None keeps params.yaml's value."""
    cells = grid(optimizers, activations)  # a bad value: fails now, before anything runs
    path = Path.cwd() / layout.PARAMS
    hidden = [h.model_dump(mode="json") for h in load_params(path).model.hidden]
    base = RunOverrides(epochs, batch_size, None, learning_rate, hidden_units)
    params = load_params(path, dotted_overrides(base, hidden))
    return tune(params, Tuning(flow_run_label("sweep"), cells), 0, 0, dask_address, dask_workers)
