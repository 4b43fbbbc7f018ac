"""Run owners and closing the runs whose process died, with real processes and a real store."""

from __future__ import annotations

import socket
import subprocess
import sys

from mlflow import MlflowClient

from fmnist.tracking.lifecycle import NOTE_TAG, OWNER_TAG, close_orphaned_runs, owner, owner_gone


def _dead_owner() -> str:
    """The owner string of a process that ran and is gone."""
    done = subprocess.run(
        [sys.executable, "-c", "from fmnist.tracking.lifecycle import owner; print(owner())"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def test_this_process_owns_its_runs_and_is_alive() -> None:
    me = owner()
    host, pid, started = me.split(":")
    assert host == socket.gethostname() and pid.isdigit() and float(started) > 0
    assert not owner_gone(me)


def test_a_dead_process_a_reused_pid_and_another_host() -> None:
    assert owner_gone(_dead_owner())
    host, pid, _ = owner().split(":")
    assert owner_gone(f"{host}:{pid}:12.00")  # our pid, but another process's start time
    assert not owner_gone(f"elsewhere.example:{pid}:12.00")  # not ours to judge
    assert not owner_gone("garbage")


def test_orphaned_runs_are_closed_killed_with_a_note_and_live_ones_kept(
    tracking_uri: str,
) -> None:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("lifecycle")
    orphan = client.create_run(experiment, tags={OWNER_TAG: _dead_owner()}).info.run_id
    live = client.create_run(experiment, tags={OWNER_TAG: owner()}).info.run_id
    foreign = client.create_run(experiment, tags={OWNER_TAG: "elsewhere:1:1.00"}).info.run_id
    assert close_orphaned_runs(client, [experiment]) == [orphan]
    assert client.get_run(orphan).info.status == "KILLED"
    assert "was gone" in client.get_run(orphan).data.tags[NOTE_TAG]
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(foreign).info.status == "RUNNING"
    assert close_orphaned_runs(client, [experiment]) == []  # once
