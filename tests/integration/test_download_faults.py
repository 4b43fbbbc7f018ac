"""`fmnist download` as users run it, against faults: a stalled loopback mirror, a real
signal, a full or read-only disk (a tiny tmpfs in a private mount namespace)."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmnist.data.http_fetch import LocalDiskError
from fmnist.process.errors import DownloadError

pytestmark = pytest.mark.integration

FIRST = "train-images-idx3-ubyte"
# Python ignores SIGINT when started with it ignored (a background job): make it Ctrl-C's.
MAIN = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from fmnist.cli import main; main()"
)
BODY = gzip.compress(os.urandom(1 << 20), mtime=0)  # 1 MB that gzip cannot shrink


class StallingMirror(http.server.ThreadingHTTPServer):
    """Answers with a Content-Length, sends the first `sent` bytes of BODY, then stalls."""

    sent = 256 << 10
    released: threading.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def stalling_mirror() -> Iterator[StallingMirror]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server: StallingMirror = self.server  # type: ignore[assignment]
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: server.sent])
            server.released.wait(60)

        def log_message(self, *args: object) -> None:
            pass

    server = StallingMirror(("127.0.0.1", 0), Handler)
    server.released = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


def write_params(folder: Path, mirror: str, timeout: float) -> None:
    (folder / "params.yaml").write_text(
        f"download:\n  mirrors: ['{mirror}']\n  timeout: {timeout}\n  retries: 3\n"
    )


def start_download(cwd: Path, *prefix: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FMNIST_DATA_MIRROR": ""}
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", MAIN, "download", "--out", "raw"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def partial_files(raw: Path) -> list[Path]:
    """The hidden files a download writes before they are verified (process.files.atomic_path)."""
    return [p for p in raw.iterdir() if p.name.startswith(".")] if raw.is_dir() else []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_file_keeps_nothing(
    tmp_path: Path, stalling_mirror: StallingMirror, signum: signal.Signals
) -> None:
    write_params(tmp_path, stalling_mirror.url, timeout=60)  # the signal comes first
    proc = start_download(tmp_path)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size for p in partial_files(tmp_path / "raw")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum  # 130, 143: an exit of its own, as shells say
    [line] = stderr.splitlines()
    assert line.startswith(f"fmnist download: interrupted ({signum.name})"), line
    assert list((tmp_path / "raw").iterdir()) == []


def test_stalled_mirror_is_one_line_within_the_timeout(
    tmp_path: Path, stalling_mirror: StallingMirror
) -> None:
    write_params(tmp_path, stalling_mirror.url, timeout=1)
    start = time.monotonic()
    proc = start_download(tmp_path)
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == DownloadError.exit_code
    [line] = stderr.splitlines()
    assert line.startswith(
        f"fmnist download: error: could not get {FIRST}.gz from any mirror: "
        f"{stalling_mirror.url}{FIRST}.gz: stalled (no byte for 1 s after 262.1 kB of 1.0 MB). "
    ), line
    assert took < 3 * 1 + 10  # the timeout, plus the interpreter's start-up
    assert list((tmp_path / "raw").iterdir()) == []


# ---------------------------------------------------------------- a full or read-only disk


def private_tmpfs(options: str, target: str) -> tuple[str, ...]:
    """A command prefix: mount a tmpfs on target in a mount namespace of its own (gone when
    the command ends), run the command, then list what it left there."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting a tmpfs needs root and unshare")
    probe = ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    script = (
        f'mount -t tmpfs -o {options} tmpfs {target} || exit 99; "$@"; code=$?; '
        f'echo "left: $(ls -A {target} | tr "\\n" " ")"; exit $code'
    )
    return ("unshare", "--mount", "sh", "-c", script, "sh")


def test_full_disk_is_a_local_error(tmp_path: Path, stalling_mirror: StallingMirror) -> None:
    """ENOSPC while writing an HTTP mirror's bytes: the local path is named, not the mirror."""
    stalling_mirror.sent = len(BODY)  # all of it: 1 MB into a 256 kB disk
    write_params(tmp_path, stalling_mirror.url, timeout=5)
    (tmp_path / "raw").mkdir()
    proc = start_download(tmp_path, *private_tmpfs("size=256k", "raw"))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == LocalDiskError.exit_code, stderr
    assert stderr.splitlines() == [
        f"fmnist download: error: raw/{FIRST}: cannot write (No space left on device, ENOSPC)"
    ]
    assert stdout.splitlines()[-1] == "left: "  # the partial file was removed


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("raw", "raw: cannot create a file in it"),
        ("raw/new", "raw/new: cannot create the folder"),
    ],
)
def test_read_only_disk_is_a_local_error(
    tmp_path: Path, stalling_mirror: StallingMirror, out: str, words: str
) -> None:
    write_params(tmp_path, stalling_mirror.url, timeout=5)
    (tmp_path / "raw").mkdir()
    prefix = private_tmpfs("ro", "raw")
    env = {**os.environ, "FMNIST_DATA_MIRROR": ""}
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", MAIN, "download", "--out", out],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == LocalDiskError.exit_code, proc.stderr
    expected = f"fmnist download: error: {words} (Read-only file system, EROFS)"
    assert proc.stderr.splitlines() == [expected]


def test_folder_in_the_way_is_a_local_error(
    tmp_path: Path, stalling_mirror: StallingMirror
) -> None:
    write_params(tmp_path, stalling_mirror.url, timeout=5)
    (tmp_path / "raw" / FIRST).mkdir(parents=True)
    proc = start_download(tmp_path)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == LocalDiskError.exit_code
    assert stderr.splitlines() == [
        f"fmnist download: error: raw/{FIRST}: is a folder, where the verified file goes; remove it"
    ]
