"""Signals after a command said its outcome: the exit code stays the one it said."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMAND = (
    "import sys\n"
    "import torn_down  # its object's __del__ runs while the interpreter unloads modules\n"
    "from fmnist.cli.app import app, run_app\n"
    "@app.command()  # with user_errors, as every command of app\n"
    "def work() -> None:\n"
    "    print('done', flush=True)\n"
    "    {then}\n"
    "sys.argv = ['fmnist', 'work']\n"
    "run_app()\n"
)
# Module globals are gone when __del__ runs then: what it calls is bound beforehand.
TORN_DOWN = (
    "import os, signal, time\n"
    "class SendsSigterm:\n"
    "    def __del__(self, kill=os.kill, pid=os.getpid(), term=signal.SIGTERM, sleep=time.sleep):\n"
    "        kill(pid, term)\n"
    "        sleep(0.2)  # (delivered by now)\n"
    "late = SendsSigterm()\n"
)


def _command(folder: Path, then: str = "pass") -> subprocess.CompletedProcess[str]:
    (folder / "torn_down.py").write_text(TORN_DOWN)
    return subprocess.run(
        [sys.executable, "-c", COMMAND.format(then=then)],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_sigterm_while_the_interpreter_unloads_keeps_a_said_success(tmp_path: Path) -> None:
    """CPython's finalization resets Python-level signal handlers to the default: a SIGTERM
    then killed a command that had printed its success (-15)."""
    done = _command(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


def test_a_failure_said_keeps_its_code_when_a_signal_follows(tmp_path: Path) -> None:
    """The failure's code, not -15, when the SIGTERM comes while the interpreter unloads."""
    then = (
        "from fmnist.process.errors import TrackingError; raise TrackingError('the store said no')"
    )
    done = _command(tmp_path, then)
    assert (done.returncode, done.stderr) == (5, "fmnist work: error: the store said no\n")
