"""Writing files so that a reader never sees half of one: a new file beside the destination,
renamed onto it (atomic on one file system). New files get the umask's mode, not mkstemp's
0600, unless a mode is asked for (the stack's record: 0600 from its first byte)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fmnist.process.errors import DataIntegrityError


@contextlib.contextmanager
def atomic_path(dest: Path, mode: int = 0o666) -> Iterator[Path]:
    """A new file beside dest, renamed onto dest only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_file_beside(dest, mode=mode)
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.filename is None:  # e.g. a writer library's ENOSPC: name the file it was for
            exc.filename = str(dest)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def new_file_beside(dest: Path, mode: int = 0o666) -> Path:
    """A new, empty, hidden file in dest's folder, with dest's suffix (Keras and numpy want it)."""
    while True:
        tmp = dest.with_name(f".{dest.stem}.{secrets.token_hex(4)}{dest.suffix}")
        with contextlib.suppress(FileExistsError):
            tmp.touch(mode=mode, exist_ok=False)
            return tmp


def write_text(dest: Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(dest: Path, data: Any) -> None:
    write_text(dest, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_csv(dest: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(dest, buffer.getvalue())


def file_digest(path: Path) -> str:
    """DVC's hash of one file: the md5 of its bytes (32 hex digits), read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def read_text(path: Path) -> str:
    """A stage's input text; missing says which stage writes it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataIntegrityError(f"{path}: missing (run the stage that writes it first)") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataIntegrityError(f"{path}: not valid JSON ({exc})") from None
