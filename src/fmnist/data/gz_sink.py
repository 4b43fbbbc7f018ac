"""A .gz stream decompressed into a file put in place (process.files.atomic_path) only once its
SHA-256 matches: dest is absent or complete and verified, never half-written (also on Ctrl-C).
The local disk's refusals are LocalDiskError: no mirror can help with them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ssl
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fmnist.process.errors import DataIntegrityError, FmnistError
from fmnist.process.files import atomic_path

CHUNK = 1 << 20  # bytes per read, from a mirror or a local file
INTERRUPTED_NOTE = "nothing kept of the partial file"


class LocalDiskError(FmnistError):
    """The local disk refused to make, write or remove the output folder or a file in it."""

    exit_code = 9  # fmnist.process.failures.STORAGE_EXIT: a local file or folder refused


def os_reason(exc: OSError) -> str:
    """The OS's words and the errno's name: 'No space left on device, ENOSPC'."""
    name = None if isinstance(exc, ssl.SSLError) else errno.errorcode.get(exc.errno or 0)
    text = " ".join(str(exc.strerror or exc).split())[:200] or type(exc).__name__
    return f"{text}, {name}" if name else text


def local_error(path: Path, doing: str, exc: OSError) -> LocalDiskError:
    """'path: cannot <doing> (<the OS's reason>)' as a LocalDiskError."""
    return LocalDiskError(f"{path}: cannot {doing} ({os_reason(exc)})")


class GzSink:
    """Decompresses and hashes .gz chunks, writing the content to `out` (the file for dest)."""

    def __init__(self, out: BinaryIO, dest: Path, expected_sha256: str, source: str) -> None:
        self.dest, self.expected, self.out = dest, expected_sha256, out
        self.prefix = f"{source}: " if source else ""
        self.digest = hashlib.sha256()
        self.inflate = zlib.decompressobj(wbits=31)  # 31: a gzip member

    def write(self, gz_chunk: bytes) -> None:
        try:
            data = self.inflate.decompress(gz_chunk)
            while self.inflate.eof and self.inflate.unused_data.strip(b"\0"):
                rest, self.inflate = self.inflate.unused_data, zlib.decompressobj(wbits=31)
                data += self.inflate.decompress(rest)  # gzip allows several members
        except zlib.error as exc:
            raise DataIntegrityError(f"{self.prefix}not a valid gzip file ({exc})") from None
        self.digest.update(data)
        try:
            self.out.write(data)
        except OSError as exc:
            raise local_error(self.dest, "write", exc) from None

    def finish(self) -> None:
        """Check the stream ended and its content hashes to the expected SHA-256."""
        if not self.inflate.eof:
            raise DataIntegrityError(
                f"{self.prefix}not a valid gzip file (it ends before the end-of-stream marker)"
            )
        try:
            self.out.close()  # the last flush may be the write that finds the disk full
        except OSError as exc:
            raise local_error(self.dest, "write", exc) from None
        if (got := self.digest.hexdigest()) != self.expected:
            raise DataIntegrityError(
                f"{self.prefix}SHA-256 of the content is {got}, expected {self.expected}"
            )


@contextlib.contextmanager
def gz_sink(dest: Path, expected_sha256: str, source: str = "") -> Iterator[GzSink]:
    """A GzSink for dest, put in place if the block ends complete and verified, else removed.
    Errors raised in the block pass through, but atomic_path names dest in an OSError without
    a file name: catch a source's read errors in the block."""
    created = placing = False
    try:
        with atomic_path(dest) as tmp:
            out = tmp.open("wb")  # an ordinary mode (the umask's): the raw files are data
            created = True
            try:
                sink = GzSink(out, dest, expected_sha256, source)
                yield sink
                sink.finish()
            finally:
                with contextlib.suppress(OSError):
                    out.close()
            placing = True  # atomic_path renames the file onto dest as its block ends
    except OSError as exc:
        if placing:
            raise local_error(dest, "put the verified file in place", exc) from None
        if not created:
            raise local_error(dest.parent, "create a file in it", exc) from None
        raise
    except KeyboardInterrupt as exc:
        if created:
            exc.add_note(INTERRUPTED_NOTE)
        raise
