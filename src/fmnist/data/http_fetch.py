"""One .gz from a mirror into a verified file, and the HttpPolicy limits of an http(s) mirror.
The file's deadline, retries and waits included, is `timeout + bytes received / min_speed`
seconds after the first request: a watchdog thread shuts the socket when it passes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fmnist.process.errors import DataIntegrityError, FmnistError
from fmnist.process.files import atomic_path

CHUNK = 1 << 20  # bytes per read of a local file
INTERRUPTED_NOTE = "nothing kept of the partial file"
_TICK = 0.1  # seconds between the watchdog's looks at the clock
PROGRESS_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


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


@contextlib.contextmanager
def gz_sink(
    dest: Path, expected_sha256: str, source: str = ""
) -> Iterator[Callable[[bytes], None]]:
    """write(gz_chunk) for the block; dest put in place only if the stream ends complete and
    verified, else left as it was (also on Ctrl-C). The block's errors pass through, but an
    OSError without a file name gets dest's: catch a source's read errors in the block."""
    prefix = f"{source}: " if source else ""
    digest, inflate = hashlib.sha256(), zlib.decompressobj(wbits=31)  # 31: a gzip member

    def write(gz_chunk: bytes) -> None:
        nonlocal inflate
        try:
            data = inflate.decompress(gz_chunk)
            while inflate.eof and inflate.unused_data.strip(b"\0"):
                rest, inflate = inflate.unused_data, zlib.decompressobj(wbits=31)
                data += inflate.decompress(rest)  # gzip allows several members
        except zlib.error as exc:
            raise DataIntegrityError(f"{prefix}not a valid gzip file ({exc})") from None
        digest.update(data)
        try:
            out.write(data)
        except OSError as exc:
            raise local_error(dest, "write", exc) from None

    created = placing = False
    try:
        with atomic_path(dest) as tmp:
            out = tmp.open("wb")  # an ordinary mode (the umask's): the raw files are data
            created = True
            try:
                yield write
                if not inflate.eof:
                    reason = "it ends before the end-of-stream marker"
                    raise DataIntegrityError(f"{prefix}not a valid gzip file ({reason})")
                try:
                    out.close()  # the last flush may be the write that finds the disk full
                except OSError as exc:
                    raise local_error(dest, "write", exc) from None
            finally:
                with contextlib.suppress(OSError):
                    out.close()
            if (got := digest.hexdigest()) != expected_sha256:
                reason = f"SHA-256 of the content is {got}, expected {expected_sha256}"
                raise DataIntegrityError(prefix + reason)
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


def fetch_http(url: str, dest: Path, expected_sha256: str, policy: HttpPolicy) -> None:
    """Put url's .gz, decompressed and verified, in place as dest, retrying within the
    deadline; the mirror's failures are MirrorError (see gz_sink for the others)."""
    fetch = _Fetch(url, policy)
    for attempt in range(policy.retries + 1):
        try:
            with gz_sink(dest, expected_sha256) as write:
                fetch.attempt(write)
            return
        except MirrorError as exc:
            wait = attempt + 1.0
            no_time = time.monotonic() + wait >= fetch.deadline()
            if not exc.retry or attempt == policy.retries or no_time:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                raise MirrorError(f"{exc}{tries}", drop=exc.drop) from None
        time.sleep(wait)


@dataclass
class _Fetch:
    """One file from one HTTP mirror: its deadline across attempts, and the current attempt's
    socket (for the watchdog) and progress (on stderr: a tqdm bar on a terminal, else a line
    at times)."""

    url: str
    policy: HttpPolicy
    start: float = field(default_factory=time.monotonic)
    received: int = 0  # bytes, all attempts
    sock: socket.socket | None = None
    fired: bool = False  # the watchdog shut the socket
    answered: bool = False
    size: int | None = None  # the answer's Content-Length
    done: int = 0  # bytes, this attempt
    bar: Any = None
    next: float = 0.0  # when the next progress line is due

    def deadline(self) -> float:
        return self.start + self.policy.timeout + self.received / self.policy.min_speed

    def too_slow(self) -> MirrorError:
        took = time.monotonic() - self.start
        return MirrorError(
            f"too slow ({human_bytes(self.received)} in {took:.0f} s, "
            f"under download.min_speed {human_bytes(self.policy.min_speed)}/s)",
            drop=True,
        )

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace extension: watch the socket once connected (again once under TLS)."""
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            self.sock = info["return_value"].get_extra_info("socket")

    @contextlib.contextmanager
    def watchdog(self) -> Iterator[None]:
        """A thread that shuts self.sock down once the clock passes the deadline."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(_TICK):
                if self.sock is not None and time.monotonic() > self.deadline():
                    self.fired = True
                    with contextlib.suppress(OSError):  # the plain socket's, also under TLS
                        socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                    return

        thread = threading.Thread(target=watch, name="download-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def attempt(self, write: Callable[[bytes], None]) -> None:
        """One GET of the url into write, within the deadline; failures are MirrorError."""
        self.sock, self.fired, self.answered, self.size, self.done = None, False, False, None, 0
        self.next = time.monotonic() + PROGRESS_EVERY
        # As urllib would: the system's CA certificates, proxies from the environment,
        # redirects followed, and the file's bytes as stored (no Content-Encoding).
        client = httpx.Client(
            verify=ssl.create_default_context(), timeout=self.policy.timeout,
            follow_redirects=True, headers={"Accept-Encoding": "identity"},
        )  # fmt: skip
        with self.watchdog(), client:
            try:
                with client.stream("GET", self.url, extensions={"trace": self.trace}) as resp:
                    if resp.is_error:
                        busy = resp.status_code in (408, 425, 429) or resp.status_code >= 500
                        reason = f"HTTP {resp.status_code} {resp.reason_phrase}"
                        raise MirrorError(reason, retry=busy, drop=busy)  # 404 & co: this file
                    length = resp.headers.get("Content-Length", "")
                    self.begin(int(length) if length.isdigit() else None)
                    for chunk in resp.iter_raw():  # as the network gives it (64 kB at most)
                        self.received += len(chunk)
                        write(chunk)
                        self.update(len(chunk))
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.failure(exc) from None
            finally:
                if self.bar is not None:
                    self.bar.close()
                    self.bar = None
        if self.fired and self.size is None:  # without a Content-Length, a shut socket ends
            raise self.too_slow()

    def begin(self, size: int | None) -> None:
        self.size, self.answered = size, True
        if self.policy.progressbar and sys.stderr is not None and sys.stderr.isatty():
            from tqdm import tqdm

            name = self.url.rsplit("/", 1)[-1]
            self.bar = tqdm(total=size, desc=name, unit="B", unit_scale=True, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.policy.progressbar and time.monotonic() >= self.next:
            self.next = time.monotonic() + PROGRESS_EVERY
            print(f"download: {self.url}: {self.amount(True)}", file=sys.stderr, flush=True)

    def amount(self, percent: bool = False) -> str:
        if not self.size:
            return human_bytes(self.done)
        share = f" ({self.done / self.size:.0%})" if percent else ""
        return f"{human_bytes(self.done)} of {human_bytes(self.size)}{share}"

    def failure(self, exc: Exception) -> MirrorError:
        """What went wrong below HTTP: before the answer (connecting, waiting) or while reading."""
        waited = f"{self.policy.timeout:g} s"
        if not self.answered and (self.fired or isinstance(exc, httpx.TimeoutException)):
            what = "connection" if isinstance(exc, httpx.ConnectTimeout) else "answer"
            return MirrorError(f"stalled (no {what} in {waited})", drop=True)
        if self.fired:
            return self.too_slow()
        if isinstance(exc, httpx.TimeoutException):
            return MirrorError(f"stalled (no byte for {waited} after {self.amount()})", drop=True)
        cause: BaseException | None = exc  # the OSError below httpx's and httpcore's chain
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        text = os_reason(cause) if cause else " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(cause, socket.gaierror):
            return MirrorError(f"cannot resolve the host ({text})", drop=True)
        if isinstance(exc, httpx.ConnectError):
            return MirrorError(f"cannot connect ({text})", retry=True, drop=True)
        if not self.answered:
            return MirrorError(f"no valid HTTP answer ({text})", retry=True, drop=True)
        if self.size is not None and self.done < self.size:
            text = "then the connection closed"
        return MirrorError(f"cut short ({self.amount()}, {text})", retry=True, drop=True)
