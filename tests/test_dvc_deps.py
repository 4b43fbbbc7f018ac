"""dvc.yaml's code deps follow one rule, so `dvc repro` reruns a stage when the code that shapes
its outputs changes, and never for plumbing:

A stage's code deps are its stage module and the computing modules it imports, followed
through computing modules only (grimp's import graph, imports inside functions included).
Computing modules are the pure logic (import-linter's pure-logic contract in pyproject.toml),
the network and its training (training.model, training.fit), the model's packaging
(training.served_model), the prepared split's file format (data.splits), and src/fmnist_model,
the model's own code, one folder dep. The CLI, process, tracking, pipeline and registry I/O
modules are plumbing: they cannot change a number, and editing them leaves `dvc status` clean.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = {
    "download": "fmnist.data.download",
    "prepare": "fmnist.data.prepare",
    "train": "fmnist.training.train",
    "evaluate": "fmnist.training.evaluate",
    "register": "fmnist.registry.register",
}
COMPUTING = {
    "fmnist.training.model",
    "fmnist.training.fit",
    "fmnist.training.served_model",
    "fmnist.data.splits",
}
SHIPPED = "fmnist_model"  # every module of it is one dep: its folder


def dvc_stages() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def pure_modules() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    (pure,) = [c for c in contracts if c["name"].startswith("Pure logic")]
    return set(pure["source_modules"])


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("fmnist", SHIPPED, cache_dir=None)


def computes(module: str) -> bool:
    return module in COMPUTING or module in pure_modules() or module.split(".")[0] == SHIPPED


def dep_path(module: str) -> str:
    if module.split(".")[0] == SHIPPED:
        return f"src/{SHIPPED}"
    path = "src/" + module.replace(".", "/")
    return f"{path}/__init__.py" if (REPO / path).is_dir() else f"{path}.py"


def code_deps(stage_module: str) -> list[str]:
    """The rule: the stage module, then what it computes with."""
    found, todo = {stage_module}, [stage_module]
    while todo:
        for imported in graph().find_modules_directly_imported_by(todo.pop()):
            if imported not in found and computes(imported):
                found.add(imported)
                todo.append(imported)
    return sorted({dep_path(m) for m in found})


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_code_deps_follow_the_rule(stage: str) -> None:
    listed = [d for d in dvc_stages()[stage]["deps"] if d.startswith("src/")]
    wanted = code_deps(STAGE_MODULES[stage])
    lines = "\n".join(f"      - {d}" for d in wanted)
    assert listed == wanted, f"dvc.yaml stage {stage}: its code deps are, by the rule:\n{lines}"


def test_every_stage_has_its_module() -> None:
    assert set(dvc_stages()) == set(STAGE_MODULES)
    for stage, spec in dvc_stages().items():
        assert spec["cmd"].split()[:2] == ["fmnist", stage]


def test_plumbing_is_never_a_dep() -> None:
    plumbing = tuple(f"src/fmnist/{p}/" for p in ("cli", "process", "tracking", "pipeline"))
    deps = [d for spec in dvc_stages().values() for d in spec["deps"]]
    assert [d for d in deps if d.startswith(plumbing)] == []


def test_the_rule_follows_computing_modules_only() -> None:
    """fit is found through train (a computing module); the params schema and MLflow's
    tracking, which train also imports, are not."""
    train = code_deps("fmnist.training.train")
    assert "src/fmnist/training/fit.py" in train
    assert "src/fmnist_model" in train
    assert "src/fmnist/params/config.py" not in train
    assert not [d for d in train if d.startswith("src/fmnist/tracking")]


def test_tracking_is_not_a_dvc_param() -> None:
    """The MLflow experiment says where results are recorded, not what they are."""
    assert all("tracking" not in spec.get("params", []) for spec in dvc_stages().values())
