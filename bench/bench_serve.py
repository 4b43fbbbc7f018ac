"""Benchmark: fmnist's scoring server (`fmnist serve`) against MLflow's own
(`mlflow models serve`), both serving the same @champion on this machine, side by side.

Each cell is clients x images per request (1 and 8 clients; 1 and 100 images), every client
one keep-alive connection sending the same JSON body (`{"inputs": [...]}`, raw pixels 0-255)
back to back. The two servers take turns, cell by cell, round by round (the order swapped
every round), so both see the same machine. Per cell: requests/s, images/s, p50 and p99 in
ms, and the server's peak RSS (its process tree); then fmnist / MLflow per round, and the
median of those ratios.

    .venv/bin/python bench/bench_serve.py [--rounds 4] [--seconds 5] [--tracking-uri URI]

Run it in the project's folder (`fmnist serve` reads params.yaml there for the model's name).
The champion comes from --tracking-uri (default: the folder's store after `make run`).
MLflow's server runs with `--env-manager local` (this environment: the same packages for
both servers, no build time measured).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from fmnist import stack

BIN = Path(sys.executable).parent
CELLS = ((1, 1), (8, 1), (1, 100), (8, 100))  # (clients, images per request)


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen

    def peak_rss_mb(self, stop: threading.Event, out: list[float]) -> None:
        """Sample the server's process tree until stop; its largest total RSS into out."""
        root = psutil.Process(self.process.pid)
        peak = 0
        while not stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
        out.append(peak / 2**20)


@contextlib.contextmanager
def started(
    name: str, argv: list[str], port: int, env: dict[str, str], log: Path
) -> Iterator[Server]:
    """A server in its own process group, answering /ping; stopped by its group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=Path.cwd(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not stack.healthy(f"http://127.0.0.1:{port}/ping"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield Server(name, port, process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def client(port: int, body: bytes, until: float, latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection posting body until the deadline; each answer's seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    try:
        while time.monotonic() < until:
            started_at = time.perf_counter()
            connection.request("POST", "/invocations", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
                return
            latencies.append(time.perf_counter() - started_at)
    except (OSError, http.client.HTTPException) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def load(server: Server, clients: int, images: np.ndarray, seconds: float) -> dict[str, float]:
    """`clients` clients for `seconds`: requests/s, images/s, p50, p99 (ms), peak RSS."""
    body = json.dumps({"inputs": images.reshape(len(images), 784).tolist()}).encode()
    for _ in range(3):  # warm-up: the first requests of a shape compile Keras' function
        client(server.port, body, time.monotonic() + 0.3, [], [])
    latencies: list[float] = []
    errors: list[str] = []
    stop, rss = threading.Event(), []  # type: ignore[var-annotated]
    sampler = threading.Thread(target=server.peak_rss_mb, args=(stop, rss))
    sampler.start()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client, args=(server.port, body, until, latencies, errors))
        for _ in range(clients)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    stop.set()
    sampler.join()
    if errors:
        raise SystemExit(f"{server.name}: {errors[0]}")
    ms = np.array(latencies) * 1000
    return {
        "req/s": len(latencies) / elapsed,
        "img/s": len(latencies) * len(images) / elapsed,
        "p50 ms": float(np.percentile(ms, 50)),
        "p99 ms": float(np.percentile(ms, 99)),
        "RSS MiB": rss[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell and server")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--model", default="fashion-mnist")
    args = parser.parse_args()
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"  # MLflow's server runs `uvicorn` by name
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": args.tracking_uri}
    images = np.random.default_rng(0).integers(0, 256, (100, 28, 28), dtype=np.uint8)
    fmnist_port, mlflow_port = stack.free_port(), stack.free_port()
    fmnist_argv = [str(BIN / "fmnist"), "serve", "--port", str(fmnist_port), "--poll-seconds", "0"]
    mlflow_argv = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{args.model}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
    ]  # fmt: skip
    results: dict[tuple[str, int, int], list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="fmnist-bench-serve-") as tmp,
        contextlib.ExitStack() as up,
    ):
        servers = [
            up.enter_context(
                started("fmnist", fmnist_argv, fmnist_port, env, Path(tmp, "fmnist.log"))
            ),
            up.enter_context(
                started("mlflow", mlflow_argv, mlflow_port, env, Path(tmp, "mlflow.log"))
            ),
        ]
        for round_ in range(args.rounds):
            order = servers if round_ % 2 == 0 else servers[::-1]
            for clients, n in CELLS:
                for server in order:
                    figures = load(server, clients, images[:n], args.seconds)
                    results.setdefault((server.name, clients, n), []).append(figures)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    report(results, args.rounds)


def report(results: dict[tuple[str, int, int], list[dict[str, float]]], rounds: int) -> None:
    print(f"\nmedians over {rounds} rounds (each cell {CELLS} = clients x images/request)")
    print(f"{'server':8} {'clients':>7} {'images':>6} {'req/s':>9} {'img/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")  # fmt: skip
    for clients, n in CELLS:
        for name in ("fmnist", "mlflow"):
            rows = results[(name, clients, n)]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            figures = (f"{med['req/s']:>9.1f} {med['img/s']:>10.1f} {med['p50 ms']:>8.1f} "
                       f"{med['p99 ms']:>8.1f} {med['RSS MiB']:>8.0f}")  # fmt: skip
            print(f"{name:8} {clients:>7} {n:>6} {figures}")
    print("\nfmnist / mlflow requests/s: the median, then each round's (>= 1.0: fmnist as fast)")
    for clients, n in CELLS:
        ratios = [
            a["req/s"] / b["req/s"]
            for a, b in zip(
                results[("fmnist", clients, n)], results[("mlflow", clients, n)], strict=True
            )
        ]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"  {clients} client(s) x {n:>3} image(s): {statistics.median(ratios):.3f}   [{shown}]"
        )


if __name__ == "__main__":
    main()
