"""Writing files so that a reader never sees half of one: every output goes through here.

A new file is made beside its destination, written, then renamed onto it (atomic on one
file system); if the writer fails or is interrupted, the destination keeps what it held and
the temporary file is removed. New files get the ordinary mode the umask gives (0644 here),
not mkstemp's 0600: nothing written through here is a secret.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A new file beside dest (see new_file_beside), renamed onto dest only if the block
    succeeds; a local write error names dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_file_beside(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.filename is None:  # e.g. a writer library's ENOSPC: name the file it was for
            exc.filename = str(dest)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def new_file_beside(dest: Path, suffix: str | None = None) -> Path:
    """A new, empty, hidden file in dest's folder (suffix: dest's own by default, which
    Keras and numpy want), mode as the umask gives."""
    end = dest.suffix if suffix is None else suffix
    while True:
        tmp = dest.with_name(f".{dest.stem}.{secrets.token_hex(4)}{end}")
        try:
            tmp.touch(mode=0o666, exist_ok=False)
            return tmp
        except FileExistsError:
            continue
