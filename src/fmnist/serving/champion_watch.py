"""`fmnist serve` follows @champion: a daemon thread loads and warms up the version the alias
names, then swaps it in. A failure keeps the old model serving, is logged once until it changes,
and is retried; waits are bounded, so Ctrl-C never waits on a registry that does not answer."""

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


def kept_line(name: str, serving: int, why: str, poll_seconds: float) -> str:
    """A problem that keeps the served version, as the log says it."""
    kept = f"still serving v{serving}, looking again every {poll_seconds:g} s"
    return f"{name} @{CHAMPION}: {why}; {kept}"


class ChampionWatcher:
    """Polls @champion (look_up: its version, None when gone), swaps in load(version)'s model."""

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
        self.describe = describe
        self.said: str | None = None  # the problem logged last: each is said once, till it ends
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
            if self.said is not None:
                again = f"names v{found} again, the version being served"
                log.info(f"{served.name} @{CHAMPION}: {again}")
            self.said = None
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
        self.said = None
        took = f"loaded and warmed up in {time.monotonic() - started:.2f} s"
        log.info(f"{served.name} @{CHAMPION}: v{served.version} -> v{found} ({took})")

    def _keep(self, served: ServedModel, why: str) -> None:
        line = kept_line(served.name, served.version, why, self.poll_seconds)
        if line != self.said and not self._stop.is_set():  # a poll left behind is mute
            log.warning(line)
        self.said = line

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
        """Stop polling; whether the thread ended within timeout (a stuck poll is left behind)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()


def look_up_champion(tracking_uri: str, name: str) -> int | None:
    """The version @champion names now; None when the alias or the model is gone."""
    from fmnist.registry.versions import alias_version, client_for
    from fmnist.tracking.mlflow_store import check_reachable

    check_reachable(tracking_uri)  # every time: a server that hangs costs one deadline
    found = alias_version(client_for(tracking_uri), name, CHAMPION)
    return None if found is None else int(found.version)


def load_warm(tracking_uri: str, name: str, version: int, workdir: Path) -> ServedModel:
    """A version loaded into workdir/v<n> and warmed up; a failure leaves no files behind."""
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
    """One line naming what went wrong, passwords in URIs hidden."""
    from fmnist.tracking.mlflow_store import failure_line, redact

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
    watcher = ChampionWatcher(
        holder,
        lambda: look_up_champion(tracking_uri, name),
        lambda version: load_warm(tracking_uri, name, version, workdir),
        poll_seconds,
        lambda exc: cause_of(exc, tracking_uri),
    )
    watcher.start()
    try:
        yield watcher
    finally:
        if not watcher.stop():
            log.warning("stopped following @%s with a look at the registry unanswered", CHAMPION)
        shutil.rmtree(workdir, ignore_errors=True)
