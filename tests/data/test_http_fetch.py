"""Fetching one file from an HTTP mirror: a real server on 127.0.0.1, well and badly behaved."""

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

import pytest
import trustme

from fmnist.data import http_fetch
from fmnist.data.http_fetch import (
    INTERRUPTED_NOTE,
    HttpPolicy,
    LocalDiskError,
    MirrorError,
    fetch_http,
    gz_sink,
    human_bytes,
    local_error,
    os_reason,
)
from fmnist.process.errors import DataIntegrityError
from tests.conftest import write_gz

FAST = HttpPolicy(timeout=5, retries=0, progressbar=False)
NAME = "train-images-idx3-ubyte"
CONTENT = bytes(range(256)) * 400  # 102.4 kB
SHA = hashlib.sha256(CONTENT).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    fail_first: int = 0  # answer 503 to this many requests first
    corrupt: bool = False  # serve other bytes than the mirror folder holds
    # how to misbehave: "stall" (accept, never answer), "slow-answer" (the status line a byte
    # at a time), "trickle" (a byte a second), "long" / "short" (Content-Length too big, the
    # connection then closed / too small)
    mode: str = ""
    requests: int = 0
    released: threading.Event  # set at the end: stalled handlers return
    scheme: str = "http"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    write_gz(folder / f"{NAME}.gz", CONTENT)
    return folder


@pytest.fixture
def tls() -> bool:
    """False; True (by a test's parametrize): the mirror speaks https, its CA trusted."""
    return False


@pytest.fixture
def http_mirror(
    mirror: Path, tls: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_Server]:
    """A real HTTP(S) server on a free loopback port serving the mirror folder."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(mirror), **kwargs)

        def do_GET(self) -> None:
            server: _Server = self.server  # type: ignore[assignment]
            server.requests += 1
            if server.requests <= server.fail_first:
                self.send_error(503, "flaky mirror")
                return
            path = mirror / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404, "no such file")
                return
            body = path.read_bytes()
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
    if tls:  # a throwaway CA, trusted the way the system's store is (SSL_CERT_FILE)
        ca, context = trustme.CA(), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        server.socket, server.scheme = context.wrap_socket(server.socket, server_side=True), "https"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


def url(server: _Server) -> str:
    """The URL of NAME's .gz on the server."""
    return f"{server.scheme}://127.0.0.1:{server.server_address[1]}/{NAME}.gz"


def fetch(target: str, out: Path, policy: HttpPolicy = FAST) -> None:
    out.mkdir(exist_ok=True)
    fetch_http(target, out / NAME, SHA, policy)


def timed_failure(target: str, out: Path, policy: HttpPolicy) -> tuple[float, MirrorError]:
    start = time.monotonic()
    with pytest.raises(MirrorError) as err:
        fetch(target, out, policy)
    return time.monotonic() - start, err.value


def nothing_unverified(out: Path) -> None:
    assert [p.name for p in out.iterdir()] == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_http_mirror(tmp_path: Path, http_mirror: _Server) -> None:
    fetch(url(http_mirror), tmp_path / "raw")
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [NAME]
    assert (tmp_path / "raw" / NAME).read_bytes() == CONTENT


def test_flaky_http_mirror_is_retried(tmp_path: Path, http_mirror: _Server) -> None:
    """503s, then served: waits of 1 s and 2 s fit in the deadline (5 s from the request)."""
    http_mirror.fail_first = 2
    policy = HttpPolicy(timeout=5, retries=2, progressbar=False)
    start = time.monotonic()
    fetch(url(http_mirror), tmp_path / "raw", policy)
    assert time.monotonic() - start < 3 * (1 + 2)
    assert http_mirror.requests == 1 + 2
    assert (tmp_path / "raw" / NAME).read_bytes() == CONTENT


def test_failing_http_mirror_without_retries_names_the_error(
    tmp_path: Path, http_mirror: _Server
) -> None:
    http_mirror.fail_first = 100
    _, err = timed_failure(url(http_mirror), tmp_path / "raw", FAST)
    assert str(err) == "HTTP 503 flaky mirror"
    assert err.drop  # a busy mirror is not asked for the other files
    assert http_mirror.requests == 1


def test_missing_file_drops_only_that_file(tmp_path: Path, http_mirror: _Server) -> None:
    target = url(http_mirror).replace(NAME, "absent")
    with pytest.raises(MirrorError) as err:
        fetch(target, tmp_path / "raw", HttpPolicy(timeout=5, retries=3, progressbar=False))
    assert str(err.value) == "HTTP 404 no such file"
    assert not err.value.drop and http_mirror.requests == 1  # 404: no retry, mirror kept


def test_http_mirror_serving_wrong_bytes(tmp_path: Path, http_mirror: _Server) -> None:
    http_mirror.corrupt = True
    out = tmp_path / "raw"
    with pytest.raises(DataIntegrityError, match="^SHA-256 of the content is [0-9a-f]{64}, exp"):
        fetch(url(http_mirror), out)
    nothing_unverified(out)


# ---------------------------------------------------------------- misbehaving HTTP mirrors
# Each asserts a bound on the wait (generous: 3x what the policy allows), the one line and
# that the output folder holds nothing unverified.


@pytest.mark.parametrize(
    ("mode", "tls"),
    [("stall", False), ("slow-answer", False), ("slow-answer", True)],
    ids=["stall", "slow-answer", "slow-answer-https"],
)
def test_mirror_that_never_answers_costs_the_timeout(
    tmp_path: Path, http_mirror: _Server, mode: str
) -> None:
    """Accepted but no answer (or one trickled byte by byte, which only the watchdog stops,
    under TLS too): given up after timeout, once."""
    http_mirror.mode = mode
    policy = HttpPolicy(timeout=1, retries=3, progressbar=False)
    took, err = timed_failure(url(http_mirror), tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    assert str(err) == "stalled (no answer in 1 s)" and err.drop
    assert http_mirror.requests == 1  # no retry: its time is up
    nothing_unverified(tmp_path / "raw")


def test_trickling_mirror_is_too_slow(tmp_path: Path, http_mirror: _Server) -> None:
    """A byte a second never trips the per-read timeout; min_speed's deadline ends it."""
    http_mirror.mode = "trickle"
    policy = HttpPolicy(timeout=2, retries=3, progressbar=False)
    took, err = timed_failure(url(http_mirror), tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    reason = r"too slow \([1-4] B in [2-4] s, under download\.min_speed 50\.0 kB/s\)"
    assert re.fullmatch(reason, str(err)), str(err)
    nothing_unverified(tmp_path / "raw")


def test_mirror_closing_before_its_content_length(
    tmp_path: Path, http_mirror: _Server, mirror: Path
) -> None:
    http_mirror.mode = "long"
    size = (mirror / f"{NAME}.gz").stat().st_size
    took, err = timed_failure(url(http_mirror), tmp_path / "raw", FAST)
    assert took < 3 * FAST.timeout
    amount = f"{human_bytes(size)} of {human_bytes(size + 1000)}"
    assert str(err) == f"cut short ({amount}, then the connection closed)"
    nothing_unverified(tmp_path / "raw")


def test_mirror_with_a_short_content_length(tmp_path: Path, http_mirror: _Server) -> None:
    http_mirror.mode = "short"
    start = time.monotonic()
    with pytest.raises(DataIntegrityError) as err:
        fetch(url(http_mirror), tmp_path / "raw")
    assert time.monotonic() - start < 3 * FAST.timeout
    assert str(err.value) == "not a valid gzip file (it ends before the end-of-stream marker)"
    nothing_unverified(tmp_path / "raw")


def test_retries_stop_at_the_deadline(tmp_path: Path, http_mirror: _Server) -> None:
    """10 retries allowed, but a wait may not pass the deadline: 2 attempts fit in 2 s."""
    http_mirror.fail_first = 100
    policy = HttpPolicy(timeout=2, retries=10, progressbar=False)
    took, err = timed_failure(url(http_mirror), tmp_path / "raw", policy)
    assert took < 3 * policy.timeout
    assert str(err) == "HTTP 503 flaky mirror (after 2 attempts)"
    assert http_mirror.requests == 2


def test_refused_connection_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, err = timed_failure(f"http://127.0.0.1:{port}/{NAME}.gz", tmp_path / "raw", FAST)
    assert str(err) == "cannot connect (Connection refused, ECONNREFUSED)" and err.drop


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
        took, err = timed_failure(f"http://127.0.0.1:{port}/{NAME}.gz", tmp_path / "raw", policy)
        assert took < 3 * policy.timeout
        for filler in fillers:
            filler.close()
    assert str(err) == "stalled (no connection in 1 s)"


# ---------------------------------------------------------------- progress


def test_progress_lines_when_not_a_terminal(
    tmp_path: Path, http_mirror: _Server, mirror: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(http_fetch, "PROGRESS_EVERY", 0.0)  # a line per chunk, not one per 5 s
    fetch(url(http_mirror), tmp_path / "raw", HttpPolicy(timeout=5, retries=0))
    size = human_bytes((mirror / f"{NAME}.gz").stat().st_size)
    line = f"download: {url(http_mirror)}: {size} of {size} (100%)"
    assert line in capsys.readouterr().err.splitlines()


def test_progress_bar_on_a_terminal(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    fetch(url(http_mirror), tmp_path / "raw", HttpPolicy(timeout=5, retries=0))
    assert re.search(rf"{NAME}\.gz: 100%\|", terminal.getvalue())


def test_no_progress_when_disabled(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(http_fetch, "PROGRESS_EVERY", 0.0)
    fetch(url(http_mirror), tmp_path / "raw", FAST)
    assert capsys.readouterr().err == ""


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 999, 12_345, 26_421_880, 5e9)] == [
        "0 B", "999 B", "12.3 kB", "26.4 MB", "5.0 GB",
    ]  # fmt: skip


def test_interrupt_keeps_no_partial_file(
    tmp_path: Path, http_mirror: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-file (here in the first progress line) unwinds through the sink: the partial
    file goes, the note says so."""

    class Interrupting(io.StringIO):
        def write(self, text: str) -> int:
            raise KeyboardInterrupt

    monkeypatch.setattr(http_fetch, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr("sys.stderr", Interrupting())
    out = tmp_path / "raw"
    with pytest.raises(KeyboardInterrupt) as err:
        fetch(url(http_mirror), out, HttpPolicy(timeout=5, retries=0))
    assert err.value.__notes__ == [INTERRUPTED_NOTE]
    nothing_unverified(out)


# ---------------------------------------------------------------- the sink: verified or absent

DATA = b"abc" * 10_000
DATA_SHA = hashlib.sha256(DATA).hexdigest()


def pour(
    dest: Path, gz: bytes, sha: str = DATA_SHA, source: str = "x.gz", step: int = 1000
) -> None:
    with gz_sink(dest, sha, source) as write:
        for start in range(0, len(gz), step):
            write(gz[start : start + step])


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
    assert str(err.value) == f"SHA-256 of the content is {DATA_SHA}, expected {'0' * 64}"
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


def test_disk_refusing_a_write_names_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FullDisk(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "open", lambda self, mode="r": FullDisk())
    with pytest.raises(LocalDiskError) as err:
        pour(tmp_path / "x", gzip.compress(DATA))
    assert str(err.value) == f"{tmp_path / 'x'}: cannot write (No space left on device, ENOSPC)"


def test_the_blocks_own_errors_pass_unchanged(tmp_path: Path) -> None:
    failure = OSError(errno.EIO, "reading the source failed")
    with pytest.raises(OSError) as err, gz_sink(tmp_path / "x", DATA_SHA):
        raise failure
    assert err.value is failure
    assert list(tmp_path.iterdir()) == []


def test_sink_interrupted_keeps_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt) as err, gz_sink(tmp_path / "x", DATA_SHA) as write:
        write(gzip.compress(DATA)[:100])
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
