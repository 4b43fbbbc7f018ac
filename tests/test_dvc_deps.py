"""dvc.yaml's deps are honest: each stage lists exactly the first-party modules its command
runs (found statically by tests/dvc_deps.py), so `dvc repro` reruns a stage whose code changed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dvc_deps import check_deps, command_files, covers, module_deps

REPO = Path(__file__).resolve().parents[1]
# Packages a stage ships whole, by path: one directory dep, since every file in it is part of
# the stage's output (train logs src/fmnist_model as the model's MLflow `code_paths`; its
# model_code.py runs only where the model is loaded).
SHIPPED = {"train": ("src/fmnist_model",)}


def dvc_stages(repo: Path = REPO) -> dict[str, Any]:
    return yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def executed_files(cmd: str, repo: Path = REPO) -> set[str]:
    """The repo-relative module files a stage's `<script> <command> ...` runs."""
    script, command = cmd.split()[:2]
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    entry = pyproject["project"]["scripts"][script]  # fmnist.cli:main
    return {p.relative_to(repo).as_posix() for p in command_files(repo / "src", entry, command)}


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_deps_are_the_modules_the_stage_runs(stage: str) -> None:
    spec = dvc_stages()[stage]
    executed = executed_files(spec["cmd"])
    result = check_deps(spec["deps"], executed)
    derived = "\n".join(f"      - {d}" for d in module_deps(executed, SHIPPED.get(stage, ())))
    assert result.ok, (
        f"dvc.yaml stage {stage}: deps missing {result.missing}, "
        f"deps its command does not run {result.unexecuted}; its module deps are:\n{derived}"
    )


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_only_shipped_packages_are_directory_deps(stage: str) -> None:
    deps = dvc_stages()[stage]["deps"]
    folders = {d for d in deps if covers("src", d) and (REPO / d).is_dir()}
    shipped = {d for d in SHIPPED.get(stage, ()) if (REPO / d).is_dir()}
    assert folders == shipped


def test_tracking_is_not_a_dvc_param() -> None:
    """The MLflow experiment says where results are recorded, not what they are."""
    assert all("tracking" not in spec.get("params", []) for spec in dvc_stages().values())


def test_a_removed_dep_is_reported_missing() -> None:
    spec = dvc_stages()["train"]
    deps = [d for d in spec["deps"] if d != "src/fmnist/stages/train.py"]
    assert len(deps) == len(spec["deps"]) - 1
    result = check_deps(deps, executed_files(spec["cmd"]))
    assert result.missing == ["src/fmnist/stages/train.py"]
    assert result.unexecuted == []


def test_a_dep_no_longer_run_is_reported() -> None:
    spec = dvc_stages()["download"]
    result = check_deps([*spec["deps"], "src/fmnist/stack/control.py"], executed_files(spec["cmd"]))
    assert result.missing == []
    assert result.unexecuted == ["src/fmnist/stack/control.py"]


def test_a_directory_dep_covers_its_files() -> None:
    executed = {"src/pkg/a.py", "src/pkg/sub/b.py", "src/other.py"}
    assert check_deps(["data/raw", "src/pkg", "src/other.py"], executed).ok
    result = check_deps(["src/pk", "src/other.py", "src/gone"], executed)
    assert result.missing == ["src/pkg/a.py", "src/pkg/sub/b.py"]
    assert result.unexecuted == ["src/pk", "src/gone"]
    assert module_deps(executed, ["src/pkg"]) == ["src/other.py", "src/pkg"]


# ---------------------------------------------------------------- the analyzer itself

SYNTHETIC = {
    "pkg/__init__.py": "",
    "pkg/cli.py": """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        import typer

        from pkg.errors import handled

        if TYPE_CHECKING:
            from pkg import typing_only

        app = typer.Typer()


        @app.command()
        @handled
        def go(flag: typing_only.Flag | None = None) -> None:
            import pkg.sub.deep as deep
            from pkg import lazy

            if flag:
                lazy.used()
            deep.run()


        @app.command("other-name")
        def other() -> None:
            from pkg.never import f

            f()


        @app.command()
        def show_all() -> None:
            pass


        def main() -> None:
            app()
        """,
    "pkg/errors.py": """
        def handled(command):
            def wrapper(*args):
                from pkg.report import line  # a closure's import: part of handled

                return command(*args)

            return wrapper
        """,
    "pkg/report.py": "def line(): ...",
    "pkg/lazy.py": """
        from pkg.base import CONSTANT  # runs when lazy is imported


        def used():
            from . import helper

            return helper.one() + CONSTANT


        def unused():
            import pkg.not_reached
        """,
    "pkg/base.py": "CONSTANT = 1",
    "pkg/helper.py": """
        def one():
            return 1


        def two():
            from pkg import not_reached
        """,
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "def run(): ...",
    "pkg/typing_only.py": "class Flag: ...",
    "pkg/never.py": "def f(): ...",
    "pkg/not_reached.py": "",
    "pkg/stray.py": "import pkg.not_reached",
}


@pytest.fixture
def synthetic_src(tmp_path: Path) -> Path:
    import textwrap

    for name, text in SYNTHETIC.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path / "src"


def synthetic_run(src: Path, command: str) -> set[str]:
    return {p.relative_to(src).as_posix() for p in command_files(src, "pkg.cli:main", command)}


def test_the_analyzer_follows_lazy_imports_to_what_is_used(synthetic_src: Path) -> None:
    assert synthetic_run(synthetic_src, "go") == {
        "pkg/__init__.py",  # every import of pkg.* runs it
        "pkg/cli.py",
        "pkg/errors.py",  # a module-level import
        "pkg/report.py",  # imported inside the decorator's closure
        "pkg/lazy.py",  # imported inside go, under an `if`
        "pkg/base.py",  # lazy's module-level import
        "pkg/helper.py",  # `from . import helper` in lazy.used; helper.one, not helper.two
        "pkg/sub/__init__.py",  # `import pkg.sub.deep as deep` runs the packages first
        "pkg/sub/deep.py",
    }  # not: typing_only (TYPE_CHECKING), never (other's), not_reached (unused functions')


def test_the_analyzer_finds_commands_by_typer_name(synthetic_src: Path) -> None:
    only_go = {"pkg/lazy.py", "pkg/base.py", "pkg/helper.py", "pkg/sub/__init__.py"}
    other = synthetic_run(synthetic_src, "other-name")
    assert "pkg/never.py" in other and not other & only_go
    assert synthetic_run(synthetic_src, "show-all") == other - {"pkg/never.py"}
    with pytest.raises(LookupError, match="no command 'other'"):
        synthetic_run(synthetic_src, "other")


def test_a_stage_runs_only_its_own_cli_module_and_stage_module() -> None:
    """One room per stage: `fmnist train` does not execute the stack's, the sweep's or
    another stage's code, so editing those reruns nothing."""
    executed = executed_files(dvc_stages()["train"]["cmd"])
    assert "src/fmnist/cli/stages.py" in executed and "src/fmnist/stages/train.py" in executed
    others = ("cli/stack.py", "cli/sweep.py", "cli/registry.py", "stages/evaluate.py", "sweep.py")
    assert not [f for f in executed if f.removeprefix("src/fmnist/") in others]
