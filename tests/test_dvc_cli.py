from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.dvc_cli import (
    clean_line,
    experiment_file,
    experiment_ref,
    failure_line,
    reproduce,
    run_experiment,
    stage_env,
    stages_in,
)
from fmnist.errors import StageError

GIT = ["-c", "user.name=t", "-c", "user.email=t@t.invalid"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}  # fmt: skip


def test_clean_line_keeps_the_last_redraw_without_colours() -> None:
    raw = "\x1b[1m 100/1500\x1b[0m ━━ loss: 1.0\r\x1b[1m1500/1500\x1b[0m ━━ loss: 0.5\n"
    assert clean_line(raw) == "1500/1500 ━━ loss: 0.5"


def test_failure_line_prefers_the_stages_own_error() -> None:
    lines = [
        "Running stage 'train':",
        "fmnist train: error: params.yaml: train.epochs: must be > 0",
        "ERROR: failed to reproduce 'train': failed to run: fmnist train, exited with 2",
    ]
    assert failure_line(lines, "dvc repro", 1) == lines[1]
    assert failure_line(lines[2:], "dvc repro", 1) == lines[2]
    assert failure_line(["noise"], "dvc repro", 255) == "dvc repro exited with 255: noise"


def test_stages_in_tells_which_stages_dvc_ran_and_which_it_reused() -> None:
    lines = [  # DVC 3's own wording, as run_dvc streams it
        "Reproducing experiment 'brave-fox'",
        "Stage 'download' didn't change, skipping",
        "Stage 'prepare' is cached - skipping run, checking out outputs",
        "Running stage 'train':",
        "> fmnist train --data data/prepared --model models/model.keras",
        "Epoch 1/1 ... Running stage 'x': not at the start of a line",
        "Stage 'evaluate' is cached - skipping run, checking out outputs",
        "Running stage 'register':",
        "'data/raw.dvc' didn't change, skipping",
    ]
    assert stages_in(lines) == (("train", "register"), ("download", "prepare", "evaluate"))
    assert stages_in([]) == ((), ())


def test_stage_env_puts_this_interpreters_bin_first() -> None:
    env = stage_env({"X": "1"})
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["X"] == "1"


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A real git + DVC repo with a one-stage pipeline whose command is given per test."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("n: 1\n")
    (tmp_path / "count.py").write_text(
        "import sys, yaml\n"
        "n = yaml.safe_load(open('params.yaml'))['n']\n"
        "if n % 2 == 0:\n"
        "    sys.exit('fmnist count: error: n must be odd')\n"
        "open('out.txt', 'w').write(str(n))\n"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  count:\n    cmd: python count.py\n    deps: [count.py]\n"
        "    params: [n]\n    outs: [out.txt]\n"
    )
    subprocess.run(["git", *GIT, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", *GIT, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    return tmp_path


@pytest.mark.slow  # real dvc processes
def test_reproduce_streams_lines_and_runs_the_stage(tiny_repo: Path) -> None:
    lines: list[str] = []
    reproduce(tiny_repo, "count", stage_env(), lines.append)
    assert (tiny_repo / "out.txt").read_text() == "1"
    assert any("Running stage 'count'" in line for line in lines)


@pytest.mark.slow  # real dvc processes
def test_experiment_leaves_the_workspace_alone(tiny_repo: Path) -> None:
    env = stage_env(GIT_ENV)
    run = run_experiment(tiny_repo, "three", ["-S", "n=3"], env, lambda line: None)
    ref = run.ref
    assert ref.endswith("/three")
    assert (run.ran, run.reused) == (("count",), ())
    assert experiment_ref(tiny_repo, "three") == ref
    assert "n: 3" in experiment_file(tiny_repo, ref, "params.yaml")
    assert (tiny_repo / "params.yaml").read_text() == "n: 1\n"
    assert not (tiny_repo / "out.txt").exists()


@pytest.mark.slow  # real dvc processes
def test_a_failing_stage_raises_its_own_line(tiny_repo: Path) -> None:
    with pytest.raises(StageError, match=r"^fmnist count: error: n must be odd$"):
        run_experiment(tiny_repo, "two", ["-S", "n=2"], stage_env(), lambda line: None)
    with pytest.raises(StageError, match="not found"):
        experiment_ref(tiny_repo, "two")


@pytest.mark.slow  # real dvc processes
def test_an_experiment_dvc_already_has_is_reused_unless_forced(tiny_repo: Path) -> None:
    env = stage_env(GIT_ENV)
    lines: list[str] = []
    first = run_experiment(tiny_repo, "five", ["-S", "n=5"], env, lines.append)
    again = run_experiment(tiny_repo, "five-again", ["-S", "n=5"], env, lines.append)
    forced = run_experiment(tiny_repo, "five-forced", ["-S", "n=5"], env, force=True)
    assert (first.ran, first.reused) == (("count",), ())
    assert (again.ran, again.reused) == ((), ("count",))  # from DVC's run cache
    assert (forced.ran, forced.reused) == (("count",), ())
    assert "Stage 'count' is cached - skipping run, checking out outputs" in lines  # streamed
    assert experiment_file(tiny_repo, again.ref, "params.yaml") == "n: 5\n"
