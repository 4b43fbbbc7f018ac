"""The promotion lock raced for: a lock left by a holder killed inside it, and four promoter
processes started at once against a real MLflow server, trial after trial. One of them breaks
the dead holder's lock, with one line; each gets the lock in turn, none fails, and no two of
their critical sections overlap.

The promoters live across trials (MLflow's import is paid once), each its own process with its
own client, and wait for a trial's go. A dead holder is a process that took the lock with
promotion_lock and was SIGKILLed inside the block, whatever the lock is made of; it is forked
from a factory process that has imported MLflow already, and reaped before the promoters go.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
from mlflow import MlflowClient

from fmnist.registry.champion import promotion_lock
from tests.integration.conftest import mlflow_server as running_mlflow_server

NAME = "fashion-mnist"
PROMOTERS = 4
TRIALS = 20
HOLD = 0.075  # s inside the critical section: long enough for a second holder to show
BREAKING = f"{NAME}: breaking a stale promotion lock of "

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# (trial, pid, entered, left, lines echoed, error): time.monotonic() is one clock for all
# processes of this machine (CLOCK_MONOTONIC)
Report = tuple[int, int, float | None, float | None, list[str], str | None]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, its store sqlite; stopped by group."""
    folder = tmp_path_factory.mktemp("lock-server")
    with running_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder) as url:
        yield url


def _die_holding_the_lock(url: str) -> None:
    with promotion_lock(MlflowClient(url), NAME, echo=lambda line: None):
        os.kill(os.getpid(), signal.SIGKILL)  # as a promotion killed mid-way: no release


def _holder_factory(url: str, orders: Connection) -> None:
    """Per order, fork a process that dies holding the lock; answer (its pid, killed inside
    the lock?) once it is reaped. Pipes only: no thread is running when it forks."""
    while orders.recv() is not None:
        pid = os.fork()
        if pid == 0:
            try:
                _die_holding_the_lock(url)
            finally:
                os._exit(1)  # the lock was not taken
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        orders.send((pid, killed))


def _promoter(url: str, go: Any, start: Barrier, reports: Any) -> None:
    """Per trial on `go`, take the lock once the others are ready too, and hold it HOLD s."""
    client = MlflowClient(url)
    client.search_registered_models(max_results=1)  # connected before the first trial
    reports.put("ready")
    while (trial := go.get()) is not None:
        lines: list[str] = []
        entered = left = error = None
        try:
            start.wait(timeout=60)
            with promotion_lock(client, NAME, timeout=60, echo=lines.append):
                entered = time.monotonic()
                time.sleep(HOLD)
                left = time.monotonic()
        except Exception as exc:  # reported: the test fails naming it
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        reports.put((trial, os.getpid(), entered, left, lines, error))


def _problems(trial: int, dead: int, reports: list[Report]) -> list[str]:
    """What went wrong in one trial: failures, overlapping sections, breaking lines."""
    found = [f"trial {trial}: promoter {r[1]} failed: {r[5]}" for r in reports if r[5]]
    sections = sorted((r[2], r[3], r[1]) for r in reports if r[2] is not None and r[3] is not None)
    if len(sections) < PROMOTERS and not found:
        found.append(f"trial {trial}: {PROMOTERS - len(sections)} never held the lock")
    for (_, left, first), (entered, _, second) in itertools.pairwise(sections):
        if entered < left:
            found.append(
                f"trial {trial}: {second} entered {left - entered:.3f} s before {first} left"
            )
    lines = [line for r in reports for line in r[4]]
    breaking = [line for line in lines if line.startswith(BREAKING)]
    if len(breaking) != 1 or f":{dead}:" not in breaking[0]:
        found.append(f"trial {trial}: {len(breaking)} breaking lines for dead holder {dead}")
    return found + [f"trial {trial}: {line}" for line in lines if not line.startswith(BREAKING)]


def test_promoters_racing_for_a_dead_holders_lock_take_it_one_at_a_time(
    mlflow_server: str,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    reports, start = spawn.Queue(), spawn.Barrier(PROMOTERS)
    gos = [spawn.Queue() for _ in range(PROMOTERS)]
    orders, factory_end = spawn.Pipe()
    factory = spawn.Process(target=_holder_factory, args=(mlflow_server, factory_end))
    promoters = [
        spawn.Process(target=_promoter, args=(mlflow_server, go, start, reports)) for go in gos
    ]
    started = time.monotonic()
    try:
        for process in (factory, *promoters):
            process.start()
        assert [reports.get(timeout=120) for _ in promoters] == ["ready"] * PROMOTERS
        problems = []
        for trial in range(TRIALS):
            orders.send(trial)
            assert orders.poll(60), "no dead holder in 60 s"
            dead, killed = orders.recv()
            assert killed, f"trial {trial}: the holder {dead} ended before taking the lock"
            for go in gos:
                go.put(trial)
            trial_reports = [reports.get(timeout=120) for _ in promoters]
            assert {r[0] for r in trial_reports} == {trial}
            problems += _problems(trial, dead, trial_reports)
        raced = time.monotonic() - started
    finally:
        orders.send(None)
        for go in gos:
            go.put(None)
        for process in (factory, *promoters):
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=30)
    summary = f"{len(problems)} problems in {TRIALS} trials ({raced:.0f} s)"
    print(summary)  # shown with -s or -rA: the trials' time
    assert not problems, summary + ":\n" + "\n".join(problems)
    lines: list[str] = []
    with promotion_lock(MlflowClient(mlflow_server), NAME, timeout=5, echo=lines.append):
        pass
    assert lines == []  # free, and nothing left to break
