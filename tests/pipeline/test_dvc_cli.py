from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmnist.pipeline.dvc_cli import (
    clean_line,
    experiment_file,
    failure_line,
    find_experiment,
    lock_changes,
    reproduce,
    run_experiment,
    stage_env,
)
from fmnist.process.errors import StageError

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


def test_lock_changes_tells_which_stages_a_run_recorded_anew() -> None:
    def lock(**stages: str) -> dict[str, object]:
        entries = {
            name: {"cmd": "c", "outs": [{"path": name, "md5": md5}]} for name, md5 in stages.items()
        }
        return {"schema": "2.0", "stages": entries}

    before = lock(download="a", prepare="b", train="c")
    after = lock(download="a", prepare="b", train="d", register="e")
    assert lock_changes(before, after) == (("train", "register"), ("download", "prepare"))
    assert lock_changes(None, after) == (("download", "prepare", "train", "register"), ())
    assert lock_changes(after, after) == ((), ("download", "prepare", "train", "register"))
    assert lock_changes(before, None) == ((), ())


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
    (tmp_path / "count.py").write_text(  # each run writes something new, as register does
        "import sys, time, yaml\n"
        "n = yaml.safe_load(open('params.yaml'))['n']\n"
        "if n % 2 == 0:\n"
        "    sys.exit('fmnist count: error: n must be odd')\n"
        "open('out.txt', 'w').write(f'{n} {time.time_ns()}')\n"
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
    assert (tiny_repo / "out.txt").read_text().split()[0] == "1"
    assert any("Running stage 'count'" in line for line in lines)


@pytest.mark.slow  # real dvc processes
def test_experiment_leaves_the_workspace_alone(tiny_repo: Path) -> None:
    env = stage_env(GIT_ENV)
    run = run_experiment(tiny_repo, "three", ["-S", "n=3"], env, lambda line: None)
    assert (run.name, run.changed, run.unchanged) == ("three", ("count",), ())
    assert find_experiment(tiny_repo, "three")[0] == run.ref
    assert "n: 3" in experiment_file(tiny_repo, run.ref, "params.yaml")
    assert (tiny_repo / "params.yaml").read_text() == "n: 1\n"
    assert not (tiny_repo / "out.txt").exists()


@pytest.mark.slow  # real dvc processes
def test_a_failing_stage_raises_its_own_line(tiny_repo: Path) -> None:
    with pytest.raises(StageError, match=r"^fmnist count: error: n must be odd$"):
        run_experiment(tiny_repo, "two", ["-S", "n=2"], stage_env(), lambda line: None)
    with pytest.raises(StageError, match="not found"):
        find_experiment(tiny_repo, "two")


@pytest.mark.slow  # real dvc processes
def test_an_experiment_dvc_already_has_is_reused_unless_forced(tiny_repo: Path) -> None:
    """Told from the experiment's dvc.lock against its baseline commit's, not from DVC's log."""
    env = stage_env(GIT_ENV)
    reproduce(tiny_repo, "count", env, lambda line: None)
    subprocess.run(["git", *GIT, "add", "-A"], cwd=tiny_repo, check=True)
    subprocess.run(["git", *GIT, "commit", "-qm", "n=1 recorded"], cwd=tiny_repo, check=True)
    lines: list[str] = []
    same = run_experiment(tiny_repo, "same", [], env, lines.append)
    forced = run_experiment(tiny_repo, "same-forced", [], env, force=True)
    five = run_experiment(tiny_repo, "five", ["-S", "n=5"], env)
    again = run_experiment(tiny_repo, "five-again", ["-S", "n=5"], env, lines.append)
    assert (same.changed, same.unchanged) == ((), ("count",))  # the baseline records it
    assert "Stage 'count' didn't change, skipping" in lines  # DVC's log, streamed
    assert (forced.changed, forced.unchanged) == (("count",), ())
    assert (five.changed, five.unchanged) == (("count",), ())
    # Restored from DVC's run cache: new against the baseline, the very outputs of `five`
    assert (again.changed, again.unchanged) == (("count",), ())
    assert "Stage 'count' is cached - skipping run, checking out outputs" in lines
    lock = [experiment_file(tiny_repo, run.ref, "dvc.lock") for run in (five, again)]
    assert lock[0] == lock[1]
    assert experiment_file(tiny_repo, again.ref, "params.yaml") == "n: 5\n"
