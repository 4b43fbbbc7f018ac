"""Scoring with the champion: `fmnist serve` (fmnist's own scoring server, an ASGI app on
uvicorn) and `fmnist predict`.

The server keeps MLflow's request format (`POST /invocations`, fmnist.invocations) and adds
what MLflow's own server lacks: a request size limit enforced while the body arrives, refusals
as one short JSON line that never echoes the request or a stack trace, and the answering
model version on every response. `mlflow models serve` still serves any version as well.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmnist.errors import FmnistError, TrackingError, first_line
from fmnist.invocations import RequestRefused, read_pixels

if TYPE_CHECKING:
    import pandas as pd
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from fmnist.config import Params

# 10,000 images of 28x28 as JSON numbers take at most 39.8 MB as whole numbers (every pixel
# `255, `, json.dumps' separators, 28x28 nesting); the 10,000 real test images take 30.6 MB,
# or 46.3 MB written as floats (`12.0`).
DEFAULT_MAX_REQUEST_MB = 50.0
INTERNAL_ERROR = "internal error (see the server log)"
MESSAGE_LIMIT = 180  # characters of a refusal's line, at most
log = logging.getLogger("uvicorn.error")  # the server's log, in uvicorn's format


@dataclass(frozen=True)
class ServedModel:
    """One registered version, loaded: it predicts and says which version it is."""

    name: str
    version: int
    model: Any  # mlflow.pyfunc.PyFuncModel

    def predict(self, pixels: np.ndarray) -> pd.DataFrame:
        """Raw pixels -> class id, label, ten probabilities."""
        return self.model.predict(pixels)


class ModelHolder:
    """The model being served. A request reads `current` once, so it predicts with, and
    reports, one version, even if a swap comes meanwhile (the old model answers what it
    started); `swap` replaces the model in one step (fmnist.champion_watch follows @champion).
    """

    def __init__(self, served: ServedModel) -> None:
        self._served = served
        self._swapping = threading.Lock()  # readers need none: one attribute read is atomic

    @property
    def current(self) -> ServedModel:
        return self._served

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve `served` from the next request on; return the model it replaces."""
        with self._swapping:  # two swappers cannot both return the same previous model
            previous, self._served = self._served, served
        return previous


def load_champion(tracking_uri: str, name: str) -> ServedModel:
    """The version holding @champion, loaded by its number (so the alias cannot move between
    reading it and loading the model)."""
    from fmnist.registry import champion_version

    version = champion_version(tracking_uri, name)  # opens the store; one line if none
    return load_version(tracking_uri, name, version)


def load_version(
    tracking_uri: str, name: str, version: int, dst_path: Path | None = None
) -> ServedModel:
    """A registered version, loaded (its artifacts downloaded into dst_path, created, if
    given; else where MLflow puts them)."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from fmnist.mlflow_store import open_store
    from fmnist.version_code import shipped_code

    open_store(tracking_uri)
    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)  # MLflow downloads only into a folder
    uri = f"models:/{name}/{version}"
    try:
        with shipped_code():  # the version's own fmnist_model, not the checkout's
            model = mlflow.pyfunc.load_model(uri, dst_path=dst_path and str(dst_path))
    except MlflowException as exc:
        raise TrackingError(f"{uri}: {first_line(exc)}") from None
    except (OSError, ValueError) as exc:  # Keras' own: a missing or broken model file
        raise TrackingError(f"{uri}: {type(exc).__name__}: {first_line(exc)}") from None
    return ServedModel(name, version, model)


def warm_up(served: ServedModel) -> None:
    """One, then two black images through the version, so Keras has compiled its prediction
    for any batch size before requests come (concurrent first requests of a new size would
    each compile it again, with TensorFlow's retracing warning)."""
    for n in (1, 2):
        answer = served.predict(np.zeros((n, 28, 28), dtype=np.uint8))  # (n, 12)
        if len(answer) != n:
            raise ValueError(f"v{served.version} answered {len(answer)} rows for {n} images")


@dataclass(frozen=True)
class Predicted:
    """`fmnist predict`'s answer: which version classified the files, and one row per file."""

    name: str
    version: int
    aliases: list[str]
    rows: list[dict[str, Any]]


def run_predict(
    params: Params, images: list[Path], tracking_uri: str, version: int | None = None
) -> Predicted:
    """Classify image files with version `version` (None: the champion's)."""
    from fmnist.image_files import read_image
    from fmnist.registry import model_version

    name = params.register_.model_name
    read = [read_image(path) for path in images]  # bad files: one line, before any loading
    pixels = np.stack([pixels for pixels, _ in read])  # (n, 28, 28) uint8, a form it takes
    served = (
        load_champion(tracking_uri, name)
        if version is None
        else load_version(tracking_uri, name, version)
    )
    table = served.predict(pixels)
    rows = [
        {
            "image": str(path),
            "label": table["label"][i],
            "probability": float(table[table["label"][i]][i]),
            "note": note,
        }
        for i, (path, (_, note)) in enumerate(zip(images, read, strict=True))
    ]
    aliases = sorted(model_version(tracking_uri, name, served.version).aliases)
    return Predicted(name, served.version, aliases, rows)


# ---------------------------------------------------------------- the server


def one_line(text: str) -> str:
    """A refusal's message: its first line, at most MESSAGE_LIMIT characters."""
    line = (text.strip().splitlines() or ["refused"])[0].strip()
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."


def create_app(holder: ModelHolder, max_request_bytes: int) -> Starlette:
    """The scoring app: POST /invocations, GET /ping, /health, /version."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def answer(body: dict[str, Any], served: ServedModel, status: int = 200) -> Response:
        headers = {"X-Model-Version": str(served.version)}  # every response says who answered
        return JSONResponse(body, status_code=status, headers=headers)

    def refuse(status: int, code: str, message: str, served: ServedModel) -> Response:
        return answer({"error_code": code, "message": one_line(message)}, served, status)

    async def invocations(request: Request) -> Response:
        served = holder.current  # this request's model, whatever a swap does meanwhile
        try:
            body = await read_body(request, max_request_bytes)
            pixels = await run_in_threadpool(read_pixels, request.headers.get("content-type"), body)
            del body
            table = await run_in_threadpool(served.predict, pixels)
        except RequestRefused as exc:
            return refuse(exc.status, exc.error_code, exc.message, served)
        except ClientDisconnect:
            return refuse(400, "BAD_REQUEST", "the client went away mid-request", served)
        except Exception as exc:
            return failure(exc, served)
        predictions = table.to_dict(orient="records")
        return answer({"predictions": predictions, "model_version": served.version}, served)

    def failure(exc: Exception, served: ServedModel) -> Response:
        """The model's refusal (MLflow's 4xx error codes) is a 400; anything else is a bug."""
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException) and 400 <= exc.get_http_status_code() < 500:
            return refuse(400, exc.error_code, str(exc), served)  # the model's own line
        log.error("POST /invocations failed (model v%s)", served.version, exc_info=exc)
        return refuse(500, "INTERNAL_ERROR", INTERNAL_ERROR, served)

    async def ping(request: Request) -> Response:
        served = holder.current
        return answer({"status": "ok", "model_version": served.version}, served)

    async def version(request: Request) -> Response:
        served = holder.current
        body = {"name": served.name, "model_version": served.version, "alias": "champion"}
        return answer(body, served)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        allowed = (exc.headers or {}).get("Allow", "")
        code, message = {
            404: ("ENDPOINT_NOT_FOUND", "no such endpoint: POST /invocations, GET /ping, "
                  "/health or /version"),
            405: ("METHOD_NOT_ALLOWED", f"method not allowed here (allowed: {allowed})"),
        }.get(exc.status_code, ("BAD_REQUEST", str(exc.detail)))  # fmt: skip
        response = refuse(exc.status_code, code, message, holder.current)
        response.headers.update(exc.headers or {})
        return response

    async def bug(request: Request, exc: Exception) -> Response:
        # Starlette raises it on after this answer, and uvicorn logs its traceback.
        return refuse(500, "INTERNAL_ERROR", INTERNAL_ERROR, holder.current)

    routes = [
        Route("/invocations", invocations, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/health", ping, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
    ]
    handlers: Any = {HTTPException: http_error, Exception: bug}
    return Starlette(routes=routes, exception_handlers=handlers)


def too_large(limit: int) -> RequestRefused:
    mb = f"{limit / 1e6:g}"
    return RequestRefused(
        413, "REQUEST_TOO_LARGE",
        f"request body over {mb} MB (the server's --max-request-mb); send fewer images",
    )  # fmt: skip


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, refused (413) past `limit` bytes: at once by its Content-Length, else while
    it streams in, so a huge body is never held. Uvicorn discards what the client still sends
    after the answer, and never asks an `Expect: 100-continue` client for the body at all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return body


def bind(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now: a busy port is one line, before any loading."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FmnistError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def serve(
    sock: socket.socket,
    served: ServedModel,
    max_request_bytes: int,
    echo: Callable[[str], Any],
    *,
    tracking_uri: str,
    poll_seconds: float,
) -> None:
    """Answer requests on sock until SIGINT or SIGTERM, following @champion every
    poll_seconds (0: never)."""
    import uvicorn

    from fmnist.champion_watch import watch_champion

    warm_up(served)
    holder = ModelHolder(served)
    app = create_app(holder, max_request_bytes)
    config = uvicorn.Config(app, log_level="info", server_header=False, proxy_headers=False)
    host, port = sock.getsockname()[:2]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    follows = (
        f"follows @champion (looks every {poll_seconds:g} s)"
        if poll_seconds > 0
        else "does not follow @champion (--poll-seconds 0)"
    )
    echo(f"serving {served.name} v{served.version} (@champion) on http://{where}; {follows}")
    with watch_champion(holder, tracking_uri, poll_seconds):
        uvicorn.Server(config).run(sockets=[sock])
