"""`fmnist serve --poll-seconds 1` (a real subprocess) follows @champion under a stream of
requests: a promoted version takes over without a failed request, a version that cannot
load leaves the old one answering, a deleted alias changes nothing, and the server stops
cleanly. Versions are made by the project's own stages; `champion` moves by its own code."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fmnist.params.config import parse_params
from fmnist.process.errors import TrackingError
from fmnist.registry.champion import promote
from fmnist.serving.champion_watch import load_warm
from tests.integration.test_serving import BIN, Served, start_server, stop_server
from tests.scoring_helpers import (
    MODEL_NAME,
    Champion,
    register_champion,
    train_evaluate_register,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
POLL = 1.0  # seconds: the server's --poll-seconds


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("following")


@pytest.fixture(scope="module")
def champion(base: Path) -> Champion:
    """v1 @champion, v2 registered by the same stages, waiting."""
    champion = register_champion(base)
    assert register_challenger(champion, base) == 2
    return champion


@pytest.fixture(scope="module")
def following(champion: Champion, base: Path) -> Iterator[Served]:
    served, server = start_server(champion, base / "serve.log", "--poll-seconds", f"{POLL:g}")
    try:
        yield served
    finally:
        stop_server(server)


def register_challenger(champion: Champion, base: Path) -> int:
    """A second version by the project's train, evaluate and register stages (another seed):
    @champion is taken away so the rule promotes it, then given back to v1 by fmnist's own
    promote. Returns its number."""
    from mlflow import MlflowClient

    client, uri = MlflowClient(champion.tracking_uri), champion.tracking_uri
    client.delete_registered_model_alias(MODEL_NAME, "champion")
    params = parse_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "steps_per_execution": 4, "seed": 8},
            "model": {"hidden": [{"units": 16, "activation": "relu", "name": "hidden"}]},
            "register": {"min_accuracy": 0.0},
        }
    )
    train_evaluate_register(params, base / "prepared", base / "challenger", uri)
    promote(uri, MODEL_NAME, 1, min_accuracy=0.0, min_delta=0.001, require_better=False)
    return max(int(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'"))


def register_broken_copy(champion: Champion, of: int, folder: Path) -> int:
    """A new version: a copy of version `of` whose Keras file is cut short (MLflow finds the
    model; Keras cannot read it)."""
    import mlflow
    import mlflow.artifacts
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(champion.tracking_uri)
    copy = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{of}", dst_path=str(folder)
        )
    )
    keras_file = copy / "artifacts" / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:200])
    created = MlflowClient(champion.tracking_uri).create_model_version(
        MODEL_NAME, source=str(copy), tags={"test_accuracy": "0.99"}
    )
    return int(created.version)


def fmnist(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fmnist"), *args, "--params", str(served.champion.params_file)],
        env=served.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@dataclass(frozen=True)
class Answer:
    thread: int
    sent: float  # time.monotonic()
    received: float
    status: int  # 0: no HTTP answer at all
    version: int | None  # what the answer's JSON says
    header: str | None  # X-Model-Version


class Stream:
    """Threads posting small batches to /invocations back to back (a keep-alive connection
    each), every answer recorded."""

    def __init__(self, served: Served, body: bytes, threads: int = 4) -> None:
        self.served, self.body = served, body
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,)) for i in range(threads)]

    def _send(self, thread: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.served.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            sent = time.monotonic()
            status, version, header = 0, None, None
            try:
                connection.request("POST", "/invocations", self.body, headers)
                response = connection.getresponse()
                status, header = response.status, response.headers.get("X-Model-Version")
                version = json.loads(response.read()).get("model_version")
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()  # counted as a failure; the next request reconnects
            with self._lock:
                self.answers.append(Answer(thread, sent, time.monotonic(), status, version, header))
        connection.close()

    def wait_for(self, done: Callable[[list[Answer]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.snapshot()):
            assert time.monotonic() < deadline, "the stream did not get there in time"
            time.sleep(0.02)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def versions_of(answers: list[Answer]) -> set[int | None]:
    return {a.version for a in answers}


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status != 200 or a.header != str(a.version)]


def served_version(served: Served) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    connection.request("GET", "/version")
    version = int(json.loads(connection.getresponse().read())["model_version"])
    connection.close()
    return version


def log_after(served: Served, start: int) -> str:
    """The server's log from byte `start` on."""
    return served.log.read_bytes()[start:].decode("utf-8", errors="replace")


def wait_for_line(served: Served, start: int, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log_after(served, start)):
        assert time.monotonic() < deadline, f"no line /{pattern}/ in:\n{log_after(served, start)}"
        time.sleep(0.1)
    return log_after(served, start)


def body_of(champion: Champion) -> bytes:
    return json.dumps({"inputs": champion.pixels[:4].tolist()}).encode()  # 4 images


def test_a_promoted_version_takes_over_without_a_failed_request(following: Served) -> None:
    assert served_version(following) == 1
    start = len(following.log.read_bytes())
    with Stream(following, body_of(following.champion)) as stream:
        stream.wait_for(lambda answers: len(answers) >= 40, timeout=60)  # v1 answering
        promote(
            following.champion.tracking_uri, MODEL_NAME, 2,
            min_accuracy=0.0, min_delta=0.001, require_better=False,
        )  # fmt: skip
        promoted = time.monotonic()
        stream.wait_for(lambda answers: 2 in versions_of(answers), timeout=10 * POLL)
        time.sleep(2 * POLL)  # and on, after the switch
    answers = stream.answers

    first_v2 = min(a.received for a in answers if a.version == 2)
    latency = first_v2 - promoted
    print(
        f"\n{len(answers)} requests from 4 threads, {len(failed(answers))} failed; the first "
        f"v2 answer {latency:.2f} s after the promotion returned (--poll-seconds {POLL:g}, "
        f"bound {2 * POLL:g} s); v1 answered {sum(a.version == 1 for a in answers)}, "
        f"v2 {sum(a.version == 2 for a in answers)}"
    )
    assert failed(answers) == []
    assert versions_of(answers) == {1, 2}  # every answer names its version, and only these
    for thread in range(4):  # each thread's requests one after another: 1...1 2...2
        seen = [a.version for a in answers if a.thread == thread]
        assert seen == sorted(seen) and seen[0] == 1 and seen[-1] == 2, seen
    assert not [a for a in answers if a.version == 1 and a.sent > first_v2]  # never back
    assert latency < 2 * POLL
    said = log_after(following, start)
    assert len(re.findall(r"@champion: v1 -> v2 \(loaded and warmed up in [0-9.]+ s\)", said)) == 1
    assert "Traceback" not in said and "WARNING" not in said


def test_a_version_that_cannot_load_leaves_the_old_one_answering(
    following: Served, base: Path
) -> None:
    before = served_version(following)
    broken = register_broken_copy(following.champion, before, base / f"broken-of-v{before}")
    start = len(following.log.read_bytes())
    with Stream(following, body_of(following.champion)) as stream:
        promoted = fmnist(following, "promote", "--version", str(broken))
        assert promoted.returncode == 0, promoted.stderr
        said = wait_for_line(following, start, rf"v{broken} could not be loaded", 10 * POLL)
        time.sleep(3 * POLL)  # three more looks, three more failed loads
        back = fmnist(following, "promote", "--version", str(before))
        assert back.returncode == 0, back.stderr
        said = wait_for_line(following, start, rf"names v{before} again", 10 * POLL)
    answers = stream.answers
    print(
        f"\n{len(answers)} requests while v{broken} could not load, {len(failed(answers))} failed"
    )
    assert failed(answers) == [] and versions_of(answers) == {before}
    (line,) = [line for line in said.splitlines() if "could not be loaded" in line]  # said once
    assert line.startswith("WARNING:") and f"still serving v{before}" in line
    assert re.search(
        rf"v{broken} could not be loaded \(models:/\S+/{broken}: \w+Error: .+\); still", line
    )
    assert "Traceback" not in said


def test_a_deleted_alias_keeps_the_model_answering(following: Served) -> None:
    from mlflow import MlflowClient

    before = served_version(following)
    client = MlflowClient(following.champion.tracking_uri)
    start = len(following.log.read_bytes())
    client.delete_registered_model_alias(MODEL_NAME, "champion")
    try:
        said = wait_for_line(following, start, "the alias is gone", 10 * POLL)
        time.sleep(2 * POLL)
        assert served_version(following) == before
    finally:
        client.set_registered_model_alias(MODEL_NAME, "champion", str(before))
    said = wait_for_line(following, start, rf"names v{before} again", 10 * POLL)
    assert said.count("the alias is gone") == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_server_and_its_watcher_stop_cleanly(
    champion: Champion, tmp_path: Path, signum: int
) -> None:
    log = tmp_path / "serve.log"
    _, server = start_server(champion, log, "--poll-seconds", "0.2")
    time.sleep(1)  # a few looks at the registry
    started = time.monotonic()
    code = stop_server(server, signum)
    said = log.read_text(encoding="utf-8", errors="replace")
    assert code == 128 + signum, said
    assert time.monotonic() - started < 15, said  # a bound, not a timing test
    assert f"interrupted ({signal.Signals(signum).name})" in said and "Traceback" not in said
    assert "follows @champion (looks every 0.2 s)" in said


def test_a_real_version_loads_warm_and_a_broken_one_leaves_nothing(
    champion: Champion, tmp_path: Path
) -> None:
    workdir = tmp_path / "loaded"
    warm = load_warm(champion.tracking_uri, MODEL_NAME, 1, workdir)
    assert warm.version == 1 and (workdir / "v1" / "MLmodel").is_file()
    shipped = type(warm.model.unwrap_python_model()).load_context.__code__.co_filename
    assert Path(shipped).is_relative_to(workdir / "v1")  # v1's own code, not the checkout's
    assert not any(Path(entry).is_relative_to(workdir) for entry in sys.path)  # put back

    broken = register_broken_copy(champion, 1, tmp_path / "broken")
    with pytest.raises(TrackingError, match="ValueError: .*model.keras"):  # Keras' words
        load_warm(champion.tracking_uri, MODEL_NAME, broken, workdir)
    assert not (workdir / f"v{broken}").exists()
    assert not any(Path(entry).is_relative_to(workdir) for entry in sys.path)
