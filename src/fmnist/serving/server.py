"""`fmnist serve`: an ASGI app on uvicorn that keeps MLflow's request format and adds what its
server lacks: a size limit enforced while the body arrives, refusals as one short JSON line
(never the request or a traceback), and the answering version on every response."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist.process.errors import FmnistError
from fmnist.serving.champion_watch import log, watch_champion
from fmnist.serving.invocations import RequestRefused, read_pixels
from fmnist.serving.loading import ModelHolder, ServedModel, warm_up

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

# 10,000 images of 28x28 as JSON numbers take at most 39.8 MB as whole numbers (every pixel
# `255, `, json.dumps' separators, 28x28 nesting); the 10,000 real test images take 30.6 MB,
# or 46.3 MB written as floats (`12.0`).
DEFAULT_MAX_REQUEST_MB = 50.0
INTERNAL_ERROR = "internal error (see the server log)"
MESSAGE_LIMIT = 180  # characters of a refusal's line, at most


def create_app(holder: ModelHolder, max_request_bytes: int) -> Starlette:
    """The scoring app: POST /invocations, GET /ping, /health, /version."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def answer(body: dict[str, Any], served: ServedModel, status: int = 200) -> Response:
        return JSONResponse(body, status, headers={"X-Model-Version": str(served.version)})

    def refuse(status: int, code: str, message: str, served: ServedModel) -> Response:
        line = (message.strip().splitlines() or ["refused"])[0].strip()  # the first line, cut
        line = line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."
        return answer({"error_code": code, "message": line}, served, status)

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


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, refused (413) past `limit` bytes: at once by its Content-Length, else while
    it streams in, so a huge body is never held (uvicorn discards the rest)."""
    too_large = RequestRefused(
        413, "REQUEST_TOO_LARGE",
        f"request body over {limit / 1e6:g} MB (the server's --max-request-mb); send fewer images",
    )  # fmt: skip
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
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
    """Answer requests on sock until SIGINT or SIGTERM, following @champion (0: never)."""
    import uvicorn

    warm_up(served)
    holder = ModelHolder(served)
    app = create_app(holder, max_request_bytes)
    config = uvicorn.Config(app, log_level="info", server_header=False, proxy_headers=False)
    host, port = sock.getsockname()[:2]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    follows = f"follows @champion (looks every {poll_seconds:g} s)"
    if poll_seconds <= 0:
        follows = "does not follow @champion (--poll-seconds 0)"
    echo(f"serving {served.name} v{served.version} (@champion) on http://{where}; {follows}")
    with watch_champion(holder, tracking_uri, poll_seconds):
        uvicorn.Server(config).run(sockets=[sock])
