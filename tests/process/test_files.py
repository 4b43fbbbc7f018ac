"""Atomic writes: all or nothing, ordinary modes, the destination named on a write error."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fmnist.process.files import atomic_path, new_file_beside


def test_a_written_file_gets_the_ordinary_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "m" / "model.keras") as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path / "m"
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m" / "model.keras").stat().st_mode) == 0o644
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["model.keras"]


def test_a_private_file_is_private_before_it_holds_anything(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "secret.json", mode=0o600) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600 and tmp.stat().st_size == 0
        tmp.write_text("{}")
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_a_failed_write_keeps_what_the_destination_held(tmp_path: Path) -> None:
    dest = tmp_path / "trained.json"
    dest.write_text("before")
    with pytest.raises(OSError, match="No space") as caught, atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a writer library raises it
    assert caught.value.filename == str(dest)  # the failure names what was being written
    assert dest.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["trained.json"]


def test_new_files_never_collide(tmp_path: Path) -> None:
    made = {new_file_beside(tmp_path / "x.partial") for _ in range(50)}
    assert len(made) == 50 and all(p.name.startswith(".x.") for p in made)
