"""A .gz stream into a verified file: complete and verified or absent, the disk's refusals named."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import re
import socket
import ssl
from pathlib import Path

import pytest

from fmnist.data.gz_sink import (
    INTERRUPTED_NOTE,
    GzSink,
    LocalDiskError,
    gz_sink,
    local_error,
    os_reason,
)
from fmnist.process.errors import DataIntegrityError

DATA = b"abc" * 10_000
SHA = hashlib.sha256(DATA).hexdigest()


def pour(dest: Path, gz: bytes, sha: str = SHA, source: str = "x.gz", step: int = 1000) -> None:
    with gz_sink(dest, sha, source) as sink:
        for start in range(0, len(gz), step):
            sink.write(gz[start : start + step])


def test_verified_stream_is_put_in_place(tmp_path: Path) -> None:
    pour(tmp_path / "x", gzip.compress(DATA))
    assert (tmp_path / "x").read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temporary file left


def test_several_gzip_members_are_one_stream(tmp_path: Path) -> None:
    half = len(DATA) // 2
    pour(tmp_path / "x", gzip.compress(DATA[:half]) + gzip.compress(DATA[half:]) + b"\0" * 8)
    assert (tmp_path / "x").read_bytes() == DATA


def test_corrupt_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataIntegrityError, match=r"^x\.gz: not a valid gzip file \("):
        pour(tmp_path / "x", b"this is not gzip")
    assert list(tmp_path.iterdir()) == []


def test_truncated_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataIntegrityError) as err:
        pour(tmp_path / "x", gzip.compress(DATA)[:-50])
    assert str(err.value) == (
        "x.gz: not a valid gzip file (it ends before the end-of-stream marker)"
    )
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataIntegrityError) as err:
        pour(tmp_path / "x", gzip.compress(DATA), sha="0" * 64, source="")
    assert str(err.value) == f"SHA-256 of the content is {SHA}, expected {'0' * 64}"
    assert list(tmp_path.iterdir()) == []


def test_dest_keeps_what_it_held_until_verified(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"old")
    with pytest.raises(DataIntegrityError):
        pour(tmp_path / "x", gzip.compress(DATA), sha="0" * 64)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]
    assert (tmp_path / "x").read_bytes() == b"old"


def test_folder_in_the_way_of_the_rename(tmp_path: Path) -> None:
    """Found as the verified file is put in place: the local path is named."""
    dest = tmp_path / "x"
    (dest / "inside").mkdir(parents=True)
    with pytest.raises(LocalDiskError) as err:
        pour(dest, gzip.compress(DATA))
    assert re.fullmatch(rf"{re.escape(str(dest))}: cannot put the verified file in place "
                        r"\((Is a directory, EISDIR|Directory not empty, ENOTEMPTY)\)",
                        str(err.value))  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no partial left


def test_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(dest: Path, suffix: str | None = None, mode: int = 0o666) -> Path:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dest.parent))

    monkeypatch.setattr("fmnist.process.files.new_file_beside", refuse)
    with pytest.raises(LocalDiskError) as err:
        pour(tmp_path / "x", gzip.compress(DATA))
    assert (
        str(err.value) == f"{tmp_path}: cannot create a file in it (Read-only file system, EROFS)"
    )


def test_disk_refusing_a_write_names_dest(tmp_path: Path) -> None:
    class FullDisk(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    sink = GzSink(FullDisk(), tmp_path / "x", SHA, "x.gz")
    with pytest.raises(LocalDiskError) as err:
        sink.write(gzip.compress(DATA))
    assert str(err.value) == f"{tmp_path / 'x'}: cannot write (No space left on device, ENOSPC)"


def test_the_blocks_own_errors_pass_unchanged(tmp_path: Path) -> None:
    failure = OSError(errno.EIO, "reading the source failed")
    with pytest.raises(OSError) as err, gz_sink(tmp_path / "x", SHA):
        raise failure
    assert err.value is failure
    assert list(tmp_path.iterdir()) == []


def test_interrupt_keeps_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt) as err, gz_sink(tmp_path / "x", SHA) as sink:
        sink.write(gzip.compress(DATA)[:100])
        raise KeyboardInterrupt
    assert err.value.__notes__ == [INTERRUPTED_NOTE]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "No space left on device, ENOSPC"),
        (errno.EROFS, "Read-only file system, EROFS"),
        (errno.EACCES, "Permission denied, EACCES"),
        (errno.EISDIR, "Is a directory, EISDIR"),
    ],
)
def test_local_error_line(code: int, words: str) -> None:
    err = local_error(Path("data/raw/x"), "write", OSError(code, os.strerror(code)))
    assert str(err) == f"data/raw/x: cannot write ({words})"
    assert isinstance(err, LocalDiskError) and err.exit_code == 9


def test_local_errors_share_the_cli_exit_code_for_storage() -> None:
    from fmnist.process.failures import STORAGE_EXIT

    assert LocalDiskError.exit_code == STORAGE_EXIT


def test_os_reason_without_an_errno_name() -> None:
    assert os_reason(socket.gaierror(-2, "Name or service not known")) == (
        "Name or service not known"
    )
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] bad cert")
    assert "EPERM" not in os_reason(cert)  # an OpenSSL code, not an errno
