"""The download stage on synthetic files: local and http mirrors (a real server on 127.0.0.1)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import io
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fmnist.data import download as dl
from fmnist.data.download import (
    HINT,
    HttpPolicy,
    LocalDiskError,
    download_dataset,
    mirror_order,
    verify_into,
)
from fmnist.data.idx import encode_idx
from fmnist.errors import DataIntegrityError, DownloadError
from tests.conftest import synthetic_images, write_gz

FAST = HttpPolicy(timeout=5, retries=0, progressbar=False)


@pytest.fixture
def contents(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Four small IDX files standing in for the real ones, their hashes made canonical."""
    train, test = synthetic_images(40, seed=3), synthetic_images(20, seed=4)
    files = {
        "train-images-idx3-ubyte": encode_idx(train[0]),
        "train-labels-idx1-ubyte": encode_idx(train[1]),
        "t10k-images-idx3-ubyte": encode_idx(test[0]),
        "t10k-labels-idx1-ubyte": encode_idx(test[1]),
    }
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setattr(dl, "CANONICAL_FILES", hashes)
    return files


@pytest.fixture
def mirror(tmp_path: Path, contents: dict[str, bytes]) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, data in contents.items():
        write_gz(folder / f"{name}.gz", data)
    return folder


class _Server(http.server.ThreadingHTTPServer):
    fail_first: int = 0  # answer 503 to this many requests first
    corrupt: bool = False  # serve other bytes than the mirror folder holds
    # how to misbehave: "stall" (accept, never answer), "slow-answer" (the status line a byte
    # at a time), "trickle" (a byte a second), "long" / "short" (Content-Length too big, the
    # connection then closed / too small)
    mode: str = ""
    requests: int = 0
    released: threading.Event  # set at the end: stalled handlers return


@pytest.fixture
def http_mirror(mirror: Path) -> Iterator[_Server]:
    """A real HTTP server on a free loopback port serving the mirror folder."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(mirror), **kwargs)

        def do_GET(self) -> None:
            server: _Server = self.server  # type: ignore[assignment]
            server.requests += 1
            if server.requests <= server.fail_first:
                self.send_error(503, "flaky mirror")
                return
            body = (mirror / self.path.lstrip("/")).read_bytes()
            if server.corrupt:
                body = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8)
            if server.mode == "stall":
                server.released.wait(60)
            elif server.mode == "slow-answer":
                for byte in b"HTTP/1.0 200 OK\r\n":
                    if server.released.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
            else:
                extra = {"long": 1000, "short": -10}.get(server.mode, 0)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                if server.mode != "trickle":
                    self.wfile.write(body)
                for byte in body if server.mode == "trickle" else b"":
                    self.wfile.write(bytes([byte]))
                    if server.released.wait(1.0):
                        return

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.released = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


def url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def test_mirror_order_puts_env_first_without_repeats() -> None:
    assert mirror_order(["a", "b"], "b") == ["b", "a"]
    assert mirror_order(["a", "b"], None) == ["a", "b"]


def test_local_mirror_round_trip(tmp_path: Path, mirror: Path, contents: dict[str, bytes]) -> None:
    out = tmp_path / "raw"
    served = download_dataset([str(mirror)], out, FAST)
    assert set(served.values()) == {str(mirror)}
    assert sorted(p.name for p in out.iterdir()) == sorted(contents)
    for name, data in contents.items():
        assert (out / name).read_bytes() == data


def test_debian_style_gzip_header_is_accepted(tmp_path: Path, contents: dict[str, bytes]) -> None:
    """Debian rewrites the gzip headers (name, mtime, level): the content hash still matches."""
    folder = tmp_path / "debian"
    folder.mkdir()
    for name, data in contents.items():
        with gzip.GzipFile(filename=name, mode="wb", fileobj=(folder / f"{name}.gz").open("wb"),
                           compresslevel=9, mtime=1_600_000_000) as gz:  # fmt: skip
            gz.write(data)
    download_dataset([str(folder)], tmp_path / "raw", FAST)
    assert (tmp_path / "raw" / "t10k-labels-idx1-ubyte").read_bytes() == contents[
        "t10k-labels-idx1-ubyte"
    ]


def test_absent_mirror_falls_through_to_the_next(tmp_path: Path, mirror: Path) -> None:
    served = download_dataset([str(tmp_path / "nowhere"), str(mirror)], tmp_path / "raw", FAST)
    assert set(served.values()) == {str(mirror)}


def test_all_mirrors_failing_is_one_message_naming_each(tmp_path: Path, contents: dict) -> None:
    out = tmp_path / "raw"
    mirrors = [str(tmp_path / "nowhere"), "http://127.0.0.1:9/"]  # port 9: nothing listens
    with pytest.raises(DownloadError) as err:
        download_dataset(mirrors, out, FAST)
    message = str(err.value)
    assert "\n" not in message
    assert all(m in message for m in mirrors)
    assert "dataset-fashion-mnist" in message and "FMNIST_DATA_MIRROR" in message
    assert list(out.iterdir()) == []


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, mirror: Path) -> None:
    write_gz(mirror / "train-labels-idx1-ubyte.gz", encode_idx(np.zeros(40, np.uint8)))
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="SHA-256 of the content"):
        download_dataset([str(mirror)], out, FAST)
    assert "train-labels-idx1-ubyte" not in {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_corrupt_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"this is not gzip")
    with pytest.raises(DataIntegrityError, match="not a valid gzip file"):
        verify_into(gz, "0" * 64, tmp_path / "x")
    assert list(tmp_path.iterdir()) == [gz]


def test_truncated_gzip(tmp_path: Path) -> None:
    gz = write_gz(tmp_path / "x.gz", b"abc" * 10_000)
    gz.write_bytes(gz.read_bytes()[:-50])
    with pytest.raises(DataIntegrityError, match="not a valid gzip file"):
        verify_into(gz, "0" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unverified_leftovers_are_removed(tmp_path: Path, mirror: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "train-images-idx3-ubyte").write_bytes(b"half a file")
    (out / ".t10k-images-idx3-ubyte.abc.partial").write_bytes(b"interrupted")
    download_dataset([str(mirror)], out, FAST)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(list(out.iterdir())) == 4


def test_http_mirror(tmp_path: Path, http_mirror: _Server, contents: dict[str, bytes]) -> None:
    served = download_dataset([url(http_mirror)], tmp_path / "raw", FAST)
    assert set(served.values()) == {url(http_mirror)}
    assert (tmp_path / "raw" / "train-images-idx3-ubyte").read_bytes() == contents[
        "train-images-idx3-ubyte"
    ]


def test_flaky_http_mirror_is_retried(tmp_path: Path, http_mirror: _Server) -> None:
    """503s, then served: waits of 1 s and 2 s fit in the deadline (5 s from the request)."""
    http_mirror.fail_first = 2
    policy = HttpPolicy(timeout=5, retries=2, progressbar=False)
    start = time.monotonic()
    download_dataset([url(http_mirror)], tmp_path / "raw", policy)
    assert time.monotonic() - start < 3 * (1 + 2)
    assert http_mirror.requests == 4 + 2
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(dl.CANONICAL_FILES)


def test_failing_http_mirror_without_retries_names_the_error(
    tmp_path: Path, http_mirror: _Server
) -> None:
    http_mirror.fail_first = 100
    with pytest.raises(DownloadError, match="503"):
        download_dataset([url(http_mirror)], tmp_path / "raw", FAST)


def test_http_mirror_serving_wrong_bytes(
    tmp_path: Path, http_mirror: _Server, mirror: Path
) -> None:
    http_mirror.corrupt = True
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match="SHA-256"):
        download_dataset([url(http_mirror)], out, FAST)
    assert list(out.iterdir()) == []
    # ... and a good mirror after it still serves everything
    download_dataset([url(http_mirror), str(mirror)], out, FAST)
    assert len(list(out.iterdir())) == 4


# ---------------------------------------------------------------- misbehaving HTTP mirrors
# Each asserts a bound on the wait (generous: 3x what the policy allows), the one line and
# that the output folder holds nothing unverified.

FIRST = "train-images-idx3-ubyte"


def failure_line(exc: pytest.ExceptionInfo[DownloadError], where: str, reason: str) -> None:
    """The exact line: the file, the one mirror tried and its reason (a regex), the hint."""
    expected = f"could not get {FIRST}.gz from any mirror: {re.escape(where)}: {reason}\\. "
    assert re.fullmatch(expected + re.escape(HINT), str(exc.value)), str(exc.value)


def nothing_unverified(out: Path) -> None:
    assert [p.name for p in out.iterdir()] == []


def timed_failure(
    server: _Server, out: Path, policy: HttpPolicy
) -> tuple[float, pytest.ExceptionInfo[DownloadError]]:
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        download_dataset([url(server)], out, policy)
    return time.monotonic() - start, err


@pytest.mark.parametrize("mode", ["stall", "slow-answer"])
def test_mirror_that_never_answers_costs_the_timeout(
    tmp_path: Path, http_mirror: _Server, mode: str
) -> None:
    """Accepted but no answer (or one trickled byte by byte): given up after timeout, once."""
    http_mirror.mode = mode
    policy = HttpPolicy(timeout=1, retries=3, progressbar=False)
    took, err = timed_failure(http_mirror, tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    failure_line(err, f"{url(http_mirror)}{FIRST}.gz", r"stalled \(no answer in 1 s\)")
    assert http_mirror.requests == 1  # no retry: its time is up
    nothing_unverified(tmp_path / "raw")


def test_trickling_mirror_is_too_slow(tmp_path: Path, http_mirror: _Server) -> None:
    """A byte a second never trips the per-read timeout; min_speed's deadline ends it."""
    http_mirror.mode = "trickle"
    policy = HttpPolicy(timeout=2, retries=3, progressbar=False)
    took, err = timed_failure(http_mirror, tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    reason = r"too slow \([1-4] B in [2-4] s, under download\.min_speed 50\.0 kB/s\)"
    failure_line(err, f"{url(http_mirror)}{FIRST}.gz", reason)
    nothing_unverified(tmp_path / "raw")


def test_mirror_closing_before_its_content_length(
    tmp_path: Path, http_mirror: _Server, mirror: Path
) -> None:
    http_mirror.mode = "long"
    size = (mirror / f"{FIRST}.gz").stat().st_size
    took, err = timed_failure(http_mirror, tmp_path / "raw", FAST)
    assert took < 3 * FAST.timeout
    amount = f"{dl.human_bytes(size)} of {dl.human_bytes(size + 1000)}"
    reason = re.escape(f"cut short ({amount}, then the connection closed)")
    failure_line(err, f"{url(http_mirror)}{FIRST}.gz", reason)
    nothing_unverified(tmp_path / "raw")


def test_mirror_with_a_short_content_length(tmp_path: Path, http_mirror: _Server) -> None:
    http_mirror.mode = "short"
    took, err = timed_failure(http_mirror, tmp_path / "raw", FAST)
    assert took < 3 * FAST.timeout
    reason = re.escape("not a valid gzip file (it ends before the end-of-stream marker)")
    failure_line(err, f"{url(http_mirror)}{FIRST}.gz", reason)
    nothing_unverified(tmp_path / "raw")


def test_retries_stop_at_the_deadline(tmp_path: Path, http_mirror: _Server) -> None:
    """10 retries allowed, but a wait may not pass the deadline: 2 attempts fit in 2 s."""
    http_mirror.fail_first = 100
    policy = HttpPolicy(timeout=2, retries=10, progressbar=False)
    took, err = timed_failure(http_mirror, tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    reason = re.escape("HTTP 503 flaky mirror (after 2 attempts)")
    failure_line(err, f"{url(http_mirror)}{FIRST}.gz", reason)
    assert http_mirror.requests == 2


@pytest.mark.parametrize(("mode", "fail_first", "requests"), [("stall", 0, 1), ("", 100, 2)])
def test_failed_mirror_is_not_asked_again(
    tmp_path: Path, http_mirror: _Server, mirror: Path, mode: str, fail_first: int, requests: int
) -> None:
    """A stalled mirror, or one still answering 503 after its retries, costs its deadline for
    the first file only; the next mirror serves all four."""
    http_mirror.mode, http_mirror.fail_first = mode, fail_first
    policy = HttpPolicy(timeout=1.5, retries=3, progressbar=False)
    start = time.monotonic()
    served = download_dataset([url(http_mirror), str(mirror)], tmp_path / "raw", policy)
    assert time.monotonic() - start < 3 * policy.timeout
    assert set(served.values()) == {str(mirror)}
    assert http_mirror.requests == requests  # 503: the 1 s wait fits in 1.5 s, the 2 s does not


def test_dropped_mirror_is_named_as_skipped(tmp_path: Path, http_mirror: _Server) -> None:
    dropped = {url(http_mirror): f"{FIRST}.gz: stalled (no answer in 1 s)"}
    with pytest.raises(DownloadError) as err:
        dl.download_file("t10k-labels-idx1-ubyte", "0" * 64, [url(http_mirror)],
                         tmp_path, FAST, dropped)  # fmt: skip
    where = f"{url(http_mirror)}t10k-labels-idx1-ubyte.gz"
    assert f"{where}: skipped ({FIRST}.gz: stalled (no answer in 1 s))." in str(err.value)
    assert http_mirror.requests == 0


def test_refused_connection_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        download_dataset([f"http://127.0.0.1:{port}/"], tmp_path / "raw", FAST)
    reason = re.escape("cannot connect (Connection refused, ECONNREFUSED)")
    failure_line(err, f"http://127.0.0.1:{port}/{FIRST}.gz", reason)


def test_connection_that_never_completes(tmp_path: Path) -> None:
    """A listener whose accept queue is full drops the SYN, as a firewall would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        policy = HttpPolicy(timeout=1, retries=3, progressbar=False)
        start = time.monotonic()
        with pytest.raises(DownloadError) as err:
            download_dataset([f"http://127.0.0.1:{port}/"], tmp_path / "raw", policy)
        assert time.monotonic() - start < 3 * policy.timeout
        for filler in fillers:
            filler.close()
    reason = re.escape("stalled (no connection in 1 s)")
    failure_line(err, f"http://127.0.0.1:{port}/{FIRST}.gz", reason)


def test_min_speed_is_validated() -> None:
    from fmnist.config import parse_params
    from fmnist.errors import ConfigError

    assert parse_params({"download": {"min_speed": 1000}}).download.min_speed == 1000
    with pytest.raises(ConfigError, match=r"download\.min_speed: Input should be greater than 0"):
        parse_params({"download": {"min_speed": 0}})


# ---------------------------------------------------------------- progress


def test_progress_lines_when_not_a_terminal(
    tmp_path: Path, http_mirror: _Server, mirror: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(dl, "PROGRESS_EVERY", 0.0)  # a line per chunk, not one per 5 s
    download_dataset([url(http_mirror)], tmp_path / "raw", HttpPolicy(timeout=5, retries=0))
    size = dl.human_bytes((mirror / f"{FIRST}.gz").stat().st_size)
    line = f"download: {url(http_mirror)}{FIRST}.gz: {size} of {size} (100%)"
    assert line in capsys.readouterr().err.splitlines()


def test_progress_bar_on_a_terminal(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    download_dataset([url(http_mirror)], tmp_path / "raw", HttpPolicy(timeout=5, retries=0))
    assert re.search(rf"{FIRST}\.gz: 100%\|", terminal.getvalue())


def test_no_progress_when_disabled(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(dl, "PROGRESS_EVERY", 0.0)
    download_dataset([url(http_mirror)], tmp_path / "raw", FAST)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- folder mirrors


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such folder"),
        (lambda p: p.write_text("a file"), "not a folder"),
        (lambda p: p.mkdir(), f"no file {FIRST}.gz"),
    ],
    ids=["absent", "a-file", "empty"],
)
def test_bad_mirror_folder_is_named(tmp_path: Path, contents: dict, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mirror"
    make(folder)
    with pytest.raises(DownloadError) as err:
        download_dataset([str(folder)], tmp_path / "raw", FAST)
    failure_line(err, str(folder), re.escape(reason))


# ---------------------------------------------------------------- local faults: never the mirrors'


def test_out_dir_under_a_file(tmp_path: Path, http_mirror: _Server) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "raw"
    with pytest.raises(LocalDiskError) as err:
        download_dataset([url(http_mirror)], out, FAST)
    assert str(err.value) == f"{out}: cannot create the folder (Not a directory, ENOTDIR)"
    assert err.value.exit_code == 9
    assert http_mirror.requests == 0


def test_out_dir_is_a_file(tmp_path: Path, http_mirror: _Server) -> None:
    out = tmp_path / "raw"
    out.write_text("")
    with pytest.raises(LocalDiskError) as err:
        download_dataset([url(http_mirror)], out, FAST)
    assert str(err.value) == f"{out}: is a file, not a folder for the raw files"


def test_folder_where_a_raw_file_goes(tmp_path: Path, http_mirror: _Server) -> None:
    out = tmp_path / "raw"
    (out / "t10k-labels-idx1-ubyte").mkdir(parents=True)
    with pytest.raises(LocalDiskError) as err:
        download_dataset([url(http_mirror)], out, FAST)
    path = out / "t10k-labels-idx1-ubyte"
    assert str(err.value) == f"{path}: is a folder, where the verified file goes; remove it"
    assert http_mirror.requests == 0  # found before downloading anything


def test_folder_in_the_way_of_the_rename(tmp_path: Path, mirror: Path) -> None:
    """Found as the verified file is put in place: the local path is named, not the mirror."""
    dest = tmp_path / "x"
    (dest / "inside").mkdir(parents=True)
    data = b"abc" * 100
    gz = write_gz(mirror / "x.gz", data)
    with pytest.raises(LocalDiskError) as err:
        verify_into(gz, hashlib.sha256(data).hexdigest(), dest)
    assert re.fullmatch(rf"{re.escape(str(dest))}: cannot put the verified file in place "
                        r"\((Is a directory, EISDIR|Directory not empty, ENOTEMPTY)\)",
                        str(err.value))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror", "x"]  # no partial left


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
    err = dl.local_error(Path("data/raw/x"), "write", OSError(code, os.strerror(code)))
    assert str(err) == f"data/raw/x: cannot write ({words})"
    assert isinstance(err, LocalDiskError) and err.exit_code == 9


def test_local_errors_share_the_cli_exit_code_for_storage() -> None:
    from fmnist.failures import STORAGE_EXIT

    assert LocalDiskError.exit_code == STORAGE_EXIT


def test_os_reason_without_an_errno_name() -> None:
    assert dl.os_reason(socket.gaierror(-2, "Name or service not known")) == (
        "Name or service not known"
    )
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] bad cert")
    assert "EPERM" not in dl.os_reason(cert)  # an OpenSSL code, not an errno


def test_human_bytes() -> None:
    assert [dl.human_bytes(n) for n in (0, 999, 12_345, 26_421_880, 5e9)] == [
        "0 B", "999 B", "12.3 kB", "26.4 MB", "5.0 GB",
    ]  # fmt: skip


def test_interrupt_keeps_no_partial_file(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-file unwinds through the sink: the partial file goes, the note says so."""

    def interrupted(self: object, n: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dl._Progress, "update", interrupted)
    out = tmp_path / "raw"
    with pytest.raises(KeyboardInterrupt) as err:
        download_dataset([url(http_mirror)], out, FAST)
    assert err.value.__notes__ == [dl.INTERRUPTED_NOTE]
    nothing_unverified(out)
