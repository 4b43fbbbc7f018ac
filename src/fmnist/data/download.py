"""Fetch the four Fashion-MNIST files from an ordered list of mirrors, verified by SHA-256.

Time limits for an HTTP mirror, per file (HttpPolicy): connecting, the answer and every read
get `timeout` seconds; from the first request on, retries and their waits included, the file
must keep an average of `min_speed` after a grace of `timeout` seconds, i.e. its deadline is
`timeout + bytes received / min_speed` seconds after the first request. A watchdog thread shuts
the socket when the deadline passes, so no read (nor a trickled answer) outlasts it. A mirror
that stalls, is too slow or cannot be reached is not asked again in the same run.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import http.client
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fmnist.errors import DataIntegrityError, DownloadError, FmnistError
from fmnist.files import new_file_beside

# SHA-256 of the decompressed files: gzip headers differ between mirrors (Debian rewrites
# them), the content does not.
CANONICAL_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MIRROR_ENV = "FMNIST_DATA_MIRROR"
HINT = (
    "install Debian's package dataset-fashion-mnist, or set FMNIST_DATA_MIRROR to a folder "
    "or http(s) URL holding the four .gz files"
)
INTERRUPTED_NOTE = "nothing kept of the partial file"
_CHUNK = 1 << 20
_TICK = 0.1  # seconds between the watchdog's looks at the clock
PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


class LocalDiskError(FmnistError):
    """The local disk refused: the output folder or a file in it can't be made, written or
    removed (read-only, full, permission, something in the way). No mirror can help."""

    exit_code = 9  # fmnist.failures.STORAGE_EXIT: a local file or folder refused


class MirrorError(Exception):
    """One mirror could not serve one file. retry: worth asking again for this file (while
    the deadline allows); drop: not worth asking for the other files this run."""

    def __init__(self, reason: str, *, retry: bool = False, drop: bool = False) -> None:
        super().__init__(reason)
        self.retry, self.drop = retry, drop


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to try an http(s) mirror (see the module's docstring)."""

    timeout: float = 10.0  # seconds to connect, for the answer, and between two reads
    retries: int = 3  # extra attempts per file, waiting 1 s, 2 s, 3 s..., within the deadline
    progressbar: bool = True  # progress on stderr
    min_speed: float = 50_000.0  # bytes/s, averaged from the first request on


def human_bytes(n: float) -> str:
    """12 B, 12.3 kB, 26.4 MB (powers of 1000)."""
    unit = "B"
    for bigger in ("kB", "MB", "GB"):
        if n < 1000:
            break
        n, unit = n / 1000, bigger
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def os_reason(exc: OSError) -> str:
    """The OS's words and the errno's name: 'No space left on device, ENOSPC'."""
    name = None if isinstance(exc, ssl.SSLError) else errno.errorcode.get(exc.errno or 0)
    text = " ".join(str(exc.strerror or exc).split())[:200] or type(exc).__name__
    return f"{text}, {name}" if name else text


def local_error(path: Path, doing: str, exc: OSError) -> LocalDiskError:
    return LocalDiskError(f"{path}: cannot {doing} ({os_reason(exc)})")


def mirror_order(configured: Sequence[str], env_mirror: str | None) -> list[str]:
    """The env mirror first when set, then the configured ones, without repeats."""
    ordered = [env_mirror] if env_mirror else []
    ordered += [m for m in configured if m not in ordered]
    return ordered


def is_http(mirror: str) -> bool:
    return mirror.startswith(("http://", "https://"))


class _Sink:
    """A .gz stream decompressed, hashed and written to a hidden file beside dest.

    commit() renames it over dest only when the content hashes to the expected SHA-256, so
    dest is absent or complete and verified, never half-written; leaving the block removes
    whatever was not committed (also on Ctrl-C).
    """

    def __init__(self, dest: Path, expected_sha256: str, source: str = "") -> None:
        self.dest, self.expected = dest, expected_sha256
        self.prefix = f"{source}: " if source else ""
        self._digest = hashlib.sha256()
        self._inflate = zlib.decompressobj(wbits=31)  # 31: a gzip member
        try:  # an ordinary mode (the umask's), not mkstemp's 0600: the raw files are data
            self.partial = new_file_beside(dest, ".partial")
            self._out = self.partial.open("wb")
        except OSError as exc:
            raise local_error(dest.parent, "create a file in it", exc) from None

    def __enter__(self) -> _Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            self._out.close()
        with contextlib.suppress(OSError):
            if self.partial.exists():
                self.partial.unlink()
                if isinstance(exc, KeyboardInterrupt):
                    exc.add_note(INTERRUPTED_NOTE)

    def write(self, gz_chunk: bytes) -> None:
        try:
            data = self._inflate.decompress(gz_chunk)
            while self._inflate.eof and self._inflate.unused_data.strip(b"\0"):
                rest, self._inflate = self._inflate.unused_data, zlib.decompressobj(wbits=31)
                data += self._inflate.decompress(rest)  # gzip allows several members
        except zlib.error as exc:
            raise DataIntegrityError(f"{self.prefix}not a valid gzip file ({exc})") from None
        self._digest.update(data)
        try:
            self._out.write(data)
        except OSError as exc:
            raise local_error(self.dest, "write", exc) from None

    def commit(self) -> None:
        if not self._inflate.eof:
            raise DataIntegrityError(
                f"{self.prefix}not a valid gzip file (it ends before the end-of-stream marker)"
            )
        try:
            self._out.close()  # the last flush may be the write that finds the disk full
        except OSError as exc:
            raise local_error(self.dest, "write", exc) from None
        if (got := self._digest.hexdigest()) != self.expected:
            raise DataIntegrityError(
                f"{self.prefix}SHA-256 of the content is {got}, expected {self.expected}"
            )
        try:
            os.replace(self.partial, self.dest)
        except OSError as exc:
            raise local_error(self.dest, "put the verified file in place", exc) from None


def verify_into(gz_path: Path, expected_sha256: str, dest: Path) -> None:
    """Decompress gz_path to dest only if its content hashes to expected_sha256.

    dest is either absent or complete and verified, never half-written. Reading gz_path
    may raise OSError; the local disk's refusals are LocalDiskError.
    """
    with gz_path.open("rb") as src, _Sink(dest, expected_sha256, gz_path.name) as sink:
        while chunk := src.read(_CHUNK):
            sink.write(chunk)
        sink.commit()


def is_verified(path: Path, expected_sha256: str) -> bool:
    """True when path exists and its content hashes to expected_sha256."""
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == expected_sha256


def _from_folder(folder: Path, name: str, expected_sha256: str, out_dir: Path) -> None:
    try:
        if not folder.is_dir():
            raise MirrorError("not a folder" if folder.exists() else "no such folder")
        verify_into(folder / f"{name}.gz", expected_sha256, out_dir / name)
    except FileNotFoundError:
        raise MirrorError(f"no file {name}.gz") from None
    except OSError as exc:  # the disk's refusals are LocalDiskError, not OSError
        raise MirrorError(f"cannot read {exc.filename or name} ({os_reason(exc)})") from None


@dataclass
class _Budget:
    """One file's time from one HTTP mirror, across its attempts."""

    policy: HttpPolicy
    start: float = field(default_factory=time.monotonic)
    received: int = 0

    def deadline(self) -> float:
        return self.start + self.policy.timeout + self.received / self.policy.min_speed

    def too_slow(self) -> MirrorError:
        took = time.monotonic() - self.start
        return MirrorError(
            f"too slow ({human_bytes(self.received)} in {took:.0f} s, "
            f"under download.min_speed {human_bytes(self.policy.min_speed)}/s)",
            drop=True,
        )


class _Watchdog:
    """Shuts a socket down once the clock passes `deadline`: a blocked read returns at once."""

    def __init__(self, deadline: float) -> None:
        self.deadline, self.fired = deadline, False
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            if self.sock is not None and time.monotonic() > self.deadline:
                self.fired = True
                with contextlib.suppress(OSError):  # the plain socket's, also under TLS
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                return


class _Watched(http.client.HTTPConnection):
    """A connection that hands its socket to a watchdog as soon as it is connected."""

    def __init__(self, *args: Any, watchdog: _Watchdog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watchdog = watchdog

    def connect(self) -> None:
        super().connect()
        self.watchdog.sock = self.sock


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


def _opener(dog: _Watchdog) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment, redirects) with watched connections."""

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(functools.partial(_Watched, watchdog=dog), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(functools.partial(_WatchedHTTPS, watchdog=dog), req)

    return urllib.request.build_opener(Http, Https)


class _Progress:
    """Bytes and percent of one download on stderr: a tqdm bar on a terminal, else a line at
    most every PROGRESS_EVERY seconds."""

    def __init__(self, url: str, enabled: bool) -> None:
        self.url, self.enabled = url, enabled
        self.size: int | None = None
        self.done, self.answered = 0, False
        self._next = time.monotonic() + PROGRESS_EVERY
        self._bar: Any = None

    def begin(self, size: int | None) -> None:
        """The answer came: size is its Content-Length, if any."""
        self.size, self.answered = size, True
        if self.enabled and sys.stderr is not None and sys.stderr.isatty():
            from tqdm import tqdm

            name = self.url.rsplit("/", 1)[-1]
            self._bar = tqdm(total=size, desc=name, unit="B", unit_scale=True, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() >= self._next:
            self._next = time.monotonic() + PROGRESS_EVERY
            print(f"download: {self.url}: {self.amount(True)}", file=sys.stderr, flush=True)

    def amount(self, percent: bool = False) -> str:
        if not self.size:
            return human_bytes(self.done)
        share = f" ({self.done / self.size:.0%})" if percent else ""
        return f"{human_bytes(self.done)} of {human_bytes(self.size)}{share}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _content_length(resp: http.client.HTTPResponse) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _attempt(url: str, sink: _Sink, budget: _Budget) -> None:
    """One GET of url into sink, within budget; failures are MirrorError."""
    policy = budget.policy
    progress = _Progress(url, policy.progressbar)
    with _Watchdog(budget.deadline()) as dog:
        try:
            with _opener(dog).open(url, timeout=policy.timeout) as resp:
                progress.begin(_content_length(resp))
                while chunk := resp.read1(_CHUNK):
                    budget.received += len(chunk)
                    dog.deadline = budget.deadline()
                    sink.write(chunk)
                    progress.update(len(chunk))
        except urllib.error.HTTPError as exc:
            exc.close()
            busy = exc.code in (408, 425, 429) or exc.code >= 500  # 404 & co: this file only
            raise MirrorError(f"HTTP {exc.code} {exc.reason}", retry=busy, drop=busy) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise _transport_failure(exc, dog, budget, progress) from None
        finally:
            progress.close()
    if progress.size is not None and progress.done >= progress.size:
        return
    if dog.fired:
        raise budget.too_slow()
    if progress.size is not None:
        reason = f"cut short ({progress.amount()}, then the connection closed)"
        raise MirrorError(reason, retry=True, drop=True)


def _transport_failure(
    exc: BaseException, dog: _Watchdog, budget: _Budget, progress: _Progress
) -> MirrorError:
    """What went wrong below HTTP: before the answer (connecting, waiting) or while reading."""
    connecting = isinstance(exc, urllib.error.URLError)  # urllib wraps errors before the answer
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    waited = f"{budget.policy.timeout:g} s"
    answered = progress.answered
    if not answered and (dog.fired or isinstance(reason, TimeoutError)):
        return MirrorError(
            f"stalled (no {'connection' if connecting else 'answer'} in {waited})", drop=True
        )
    if dog.fired:
        return budget.too_slow()
    if isinstance(reason, TimeoutError):
        return MirrorError(f"stalled (no byte for {waited} after {progress.amount()})", drop=True)
    text = os_reason(reason) if isinstance(reason, OSError) else " ".join(str(reason).split())
    if isinstance(reason, socket.gaierror):
        return MirrorError(f"cannot resolve the host ({text})", drop=True)
    if connecting:
        return MirrorError(f"cannot connect ({text})", retry=True, drop=True)
    if not answered:
        reason_text = text or type(reason).__name__
        return MirrorError(f"no valid HTTP answer ({reason_text})", retry=True, drop=True)
    return MirrorError(f"cut short ({progress.amount()}, {text})", retry=True, drop=True)


def _from_http(url: str, dest: Path, expected_sha256: str, policy: HttpPolicy) -> None:
    budget = _Budget(policy)
    for attempt in range(policy.retries + 1):
        try:
            with _Sink(dest, expected_sha256) as sink:
                _attempt(url, sink, budget)
                sink.commit()
            return
        except MirrorError as exc:
            wait = attempt + 1.0
            no_time = time.monotonic() + wait >= budget.deadline()
            if not exc.retry or attempt == policy.retries or no_time:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise MirrorError(f"{exc}{tries}", drop=exc.drop) from None
        time.sleep(wait)


def download_file(
    name: str,
    expected_sha256: str,
    mirrors: Sequence[str],
    out_dir: Path,
    policy: HttpPolicy,
    dropped: dict[str, str] | None = None,
) -> str:
    """Put a verified out_dir/name in place from the first mirror that serves it; return it.

    dropped: mirror -> why it is not asked again this run (filled in here). A LocalDiskError
    ends the download at once: no mirror can help.
    """
    dropped = {} if dropped is None else dropped
    failures = []
    for mirror in mirrors:
        where = f"{mirror.rstrip('/')}/{name}.gz" if is_http(mirror) else mirror
        if mirror in dropped:
            failures.append(f"{where}: skipped ({dropped[mirror]})")
            continue
        try:
            if is_http(mirror):
                _from_http(where, out_dir / name, expected_sha256, policy)
            else:
                _from_folder(Path(mirror).expanduser(), name, expected_sha256, out_dir)
            return mirror
        except (MirrorError, DataIntegrityError) as exc:
            failures.append(f"{where}: {exc}")
            if isinstance(exc, MirrorError) and exc.drop:
                dropped[mirror] = f"{name}.gz: {exc}"
    raise DownloadError(f"could not get {name}.gz from any mirror: {'; '.join(failures)}. {HINT}")


def download_dataset(mirrors: Sequence[str], out_dir: Path, policy: HttpPolicy) -> dict[str, str]:
    """Fill out_dir with the four verified, decompressed files; return which mirror served each."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LocalDiskError(f"{out_dir}: is a file, not a folder for the raw files") from None
    except OSError as exc:
        raise local_error(out_dir, "create the folder", exc) from None
    clear_unverified(out_dir)
    dropped: dict[str, str] = {}
    return {
        name: "already present"
        if (out_dir / name).is_file()
        else download_file(name, sha256, mirrors, out_dir, policy, dropped)
        for name, sha256 in CANONICAL_FILES.items()
    }


def clear_unverified(out_dir: Path) -> None:
    """Remove partial files and canonical files that fail verification; leave anything else.

    A folder where a canonical file goes is a LocalDiskError, found before any download.
    """
    if not out_dir.is_dir():
        return
    try:
        paths = list(out_dir.iterdir())
    except OSError as exc:
        raise local_error(out_dir, "list the folder", exc) from None
    for path in paths:
        expected = CANONICAL_FILES.get(path.name)
        if expected is not None and path.is_dir():
            raise LocalDiskError(f"{path}: is a folder, where the verified file goes; remove it")
        leftover = path.name.startswith(".") and path.name.endswith(".partial")
        try:
            stale = leftover or (expected is not None and not is_verified(path, expected))
        except OSError as exc:
            raise local_error(path, "read", exc) from None
        try:
            if stale:
                path.unlink()
        except OSError as exc:
            raise local_error(path, "remove an unverified file", exc) from None
