"""`fmnist serve` follows @champion: a thread looks the alias up every `--poll-seconds` and,
when it names another version, loads that version, has it answer warm-up images, and only
then swaps it in (ModelHolder.swap). Requests already running finish on the old model, later
ones get the new one, and every answer names its version. The switch is one log line.

Whatever goes wrong (the registry down or hanging, the alias deleted, a version that will
not load or predict) keeps the old model serving, is logged as one line (said once until it
changes) and is tried again at the next poll.

Waits are bounded: a tracking server must answer its health check within
FMNIST_TRACKING_TIMEOUT before each look (fmnist.tracking.store.check_reachable), and MLflow's own
requests time out as fmnist.tracking.store.bound_http_waits sets them for every fmnist command. The
thread is a daemon that wakes for its stop event: Ctrl-C or SIGTERM stops the server without
waiting on a registry that does not answer.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fmnist.process.errors import first_line
from fmnist.registry.promotion import CHAMPION
from fmnist.serving.loading import ModelHolder, ServedModel, load_version, warm_up

STOP_WAIT = 2.0  # seconds the server's exit waits for a poll under way (a load takes less)
CAUSE_LIMIT = 500  # characters: MLflow's HTTP errors say why (timed out, refused) near the end
log = logging.getLogger("uvicorn.error")  # the server's log, in uvicorn's format

# ---------------------------------------------------------------- pure: what to say


def switched_line(name: str, old: int, new: int, seconds: float) -> str:
    """The switch, as the log says it."""
    return f"{name} @{CHAMPION}: v{old} -> v{new} (loaded and warmed up in {seconds:.2f} s)"


def kept_line(name: str, serving: int, why: str, poll_seconds: float) -> str:
    """A problem that keeps the served version, as the log says it."""
    return (
        f"{name} @{CHAMPION}: {why}; still serving v{serving}, "
        f"looking again every {poll_seconds:g} s"
    )


def resolved_line(name: str, serving: int) -> str:
    """The end of a problem, the served version still the champion."""
    return f"{name} @{CHAMPION}: names v{serving} again, the version being served"


class Notes:
    """Problem lines, each said once until another replaces it or the problem is over."""

    def __init__(self) -> None:
        self.said: str | None = None

    def is_news(self, line: str) -> bool:
        """Whether line should be logged (it is not the problem said last)."""
        news, self.said = line != self.said, line
        return news

    def ended(self) -> bool:
        """Whether a problem had been said (it is over now)."""
        ended, self.said = self.said is not None, None
        return ended


# ---------------------------------------------------------------- the watcher


class ChampionWatcher:
    """Polls @champion (look_up: its version, or None when gone) and swaps in what
    load(version) returns; both may raise, which keeps the served model."""

    def __init__(
        self,
        holder: ModelHolder,
        look_up: Callable[[], int | None],
        load: Callable[[int], ServedModel],
        poll_seconds: float,
        describe: Callable[[Exception], str] = lambda exc: (
            f"{type(exc).__name__}: {first_line(exc)}"
        ),
    ) -> None:
        self.holder = holder
        self.look_up = look_up
        self.load = load
        self.poll_seconds = poll_seconds
        self.describe = describe  # an exception -> one line naming the cause
        self.notes = Notes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watch", daemon=True)

    def poll(self) -> None:
        """One look at @champion: swap in the version it names, or log why not."""
        served = self.holder.current
        try:
            found = self.look_up()
        except Exception as exc:
            self._keep(served, f"cannot read the registry ({self.describe(exc)})")
            return
        if found is None:
            self._keep(served, "the alias is gone (deleted, or its registered model)")
            return
        if found == served.version:
            if self.notes.ended():
                log.info(resolved_line(served.name, served.version))
            return
        started = time.monotonic()
        try:
            fresh = self.load(found)  # loaded and warmed up while the old one serves
        except Exception as exc:
            self._keep(served, f"v{found} could not be loaded ({self.describe(exc)})")
            return
        if self._stop.is_set():
            return  # the server is stopping: nothing left to serve it to
        self.holder.swap(fresh)
        self.notes.ended()
        log.info(switched_line(served.name, served.version, found, time.monotonic() - started))

    def _keep(self, served: ServedModel, why: str) -> None:
        line = kept_line(served.name, served.version, why, self.poll_seconds)
        if self.notes.is_news(line) and not self._stop.is_set():  # a poll left behind is mute
            log.warning(line)

    def start(self) -> None:
        """Poll every poll_seconds in a daemon thread, the first poll one interval from now."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # a bug of ours: its traceback in the log, the old model serves on
                log.exception("following @%s failed", CHAMPION)

    def stop(self, timeout: float = STOP_WAIT) -> bool:
        """Stop polling; whether the thread ended within timeout (a poll waiting on a
        registry that does not answer is left behind: a daemon, it never holds the process)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()


# ---------------------------------------------------------------- the registry and the models


def look_up_champion(tracking_uri: str, name: str) -> int | None:
    """The version @champion names now; None when the alias or the model is gone."""
    from fmnist.registry.versions import alias_version, client_for
    from fmnist.tracking.store import check_reachable

    check_reachable(tracking_uri)  # every time: a server that hangs costs one deadline
    found = alias_version(client_for(tracking_uri), name, CHAMPION)
    return None if found is None else int(found.version)


def load_warm(tracking_uri: str, name: str, version: int, workdir: Path) -> ServedModel:
    """A version loaded into workdir/v<n>, with its own code (fmnist.serving.version_code), that has
    answered the warm-up images; a failure leaves no files behind, so retries do not pile up."""
    folder = workdir / f"v{version}"
    shutil.rmtree(folder, ignore_errors=True)  # a version served before, loaded again
    try:
        served = load_version(tracking_uri, name, version, folder)
        warm_up(served)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return served


def cause_of(exc: Exception, tracking_uri: str | None = None) -> str:
    """One line naming what went wrong, passwords in URIs hidden (fmnist's own line for a
    failure it knows, else the exception's type and first line)."""
    from fmnist.tracking.store import failure_line, redact

    said = failure_line(exc, tracking_uri)
    line = redact(said[0] if said else f"{type(exc).__name__}: {first_line(exc)}")
    return line if len(line) <= CAUSE_LIMIT else line[: CAUSE_LIMIT - 3] + "..."


@contextlib.contextmanager
def watch_champion(
    holder: ModelHolder, tracking_uri: str, poll_seconds: float
) -> Iterator[ChampionWatcher | None]:
    """Follow @champion for the block (poll_seconds 0: not at all); stopped on the way out."""
    if poll_seconds <= 0:
        yield None
        return
    name = holder.current.name
    workdir = Path(tempfile.mkdtemp(prefix="fmnist-serve-"))  # the versions loaded later

    def look_up() -> int | None:
        return look_up_champion(tracking_uri, name)

    def load(version: int) -> ServedModel:
        return load_warm(tracking_uri, name, version, workdir)

    def describe(exc: Exception) -> str:
        return cause_of(exc, tracking_uri)

    watcher = ChampionWatcher(holder, look_up, load, poll_seconds, describe)
    watcher.start()
    try:
        yield watcher
    finally:
        if not watcher.stop():
            log.warning("stopped following @%s with a look at the registry unanswered", CHAMPION)
        shutil.rmtree(workdir, ignore_errors=True)
