"""The pipeline's paths are named once: dvc.yaml's command lines pass what the CLI's
defaults are, and both are fmnist.process.layout's."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from fmnist.cli import app, load_commands
from fmnist.process import layout
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _commands() -> dict[str, Any]:
    """The app's commands as Typer builds them (Typer's own Click), every one registered."""
    load_commands()
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_yaml_passes_the_clis_default_paths(stage: str) -> None:
    words = shlex.split(STAGES[stage]["cmd"])
    assert words[:2] == ["fmnist", stage]  # one name: dvc.yaml stage = CLI command
    given = dict(zip(words[2::2], words[3::2], strict=True))
    defaults = {
        opt: param.default
        for param in _commands()[stage].params
        if param.param_type_name == "option"
        for opt in param.opts
        if isinstance(param.default, Path)
    }
    assert given, stage
    for option, value in given.items():
        assert Path(value) == defaults[option], f"{stage} {option}"


def test_every_output_path_is_a_layout_path_and_dvc_tracks_it() -> None:
    paths = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, Path)}
    outs: set[Path] = set()
    for spec in STAGES.values():
        for kind in ("outs", "metrics", "plots"):
            for out in spec.get(kind, []):
                outs.add(Path(next(iter(out)) if isinstance(out, dict) else out))
    assert outs == paths - {layout.PARAMS}


def test_every_command_has_its_module() -> None:
    from fmnist.cli import COMMAND_MODULES

    assert list(_commands()) == list(COMMAND_MODULES)  # and `--help` lists them so
