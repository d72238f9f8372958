"""The service's ASGI middleware: body limits by bytes actually read, and request metrics.

Pure ASGI (Starlette's ``BaseHTTPMiddleware`` costs more than a whole prediction). A body is read
here, chunk by chunk, before the app sees it: a request whose body grows past
``serving.max_body_bytes`` is answered 413 whether or not it declared a ``Content-Length``
(chunked uploads included), and the app gets the buffered body replayed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi.responses import JSONResponse

from flywheel.serving.metrics import Metrics

OTHER = "other"
_logger = logging.getLogger(__name__)


class Observe:
    """Rejects oversized bodies with 413, times requests and counts them by route and status."""

    def __init__(self, app: Any, metrics: Metrics, max_body_bytes: int, paths: frozenset[str]) -> None:
        self.app, self.metrics, self.limit, self.paths = app, metrics, max_body_bytes, paths

    def endpoint(self, scope: dict) -> str:
        """The route template that answered, else the path when it is one of the service's, else
        ``other``: raw paths would let any client grow the label set, and ``/metrics``, without bound."""
        route = scope.get("route")  # set by the router once a route matched
        if route is not None:
            return route.path
        return scope["path"] if scope["path"] in self.paths else OTHER

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []  # set when a response starts

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            body = await self._read(scope, receive)
            if body is None:
                response = JSONResponse(
                    {"detail": f"request body exceeds serving.max_body_bytes ({self.limit} bytes)"},
                    status_code=413,
                )
                await response(scope, receive, sending)
                return
            await self.app(scope, _replay(body, receive), sending)
        except Exception:  # a bug: logged once here (an app-level handler is logged twice), never a trace
            _logger.exception("unhandled error on %s", scope["path"])
            if not status:  # nothing sent yet (a started response cannot be replaced)
                await JSONResponse({"detail": "internal error; see the service log"}, 500)(
                    scope, receive, sending
                )
        finally:
            endpoint = self.endpoint(scope)
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status[0] if status else 500)).inc()

    async def _read(self, scope: dict, receive: Any) -> bytes | None:
        """The whole body, or None once it passes the limit (declared or read)."""
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing left to read
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect, as the server would
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
