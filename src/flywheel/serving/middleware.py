"""The service's ASGI middleware: body limits by bytes actually read, request metrics, and the
shortcut of ``/v1/predict``'s plain requests past FastAPI's per-request machinery.

Pure ASGI (Starlette's ``BaseHTTPMiddleware`` costs more than a whole prediction). A body is read
here, chunk by chunk, before the app sees it: a request whose body grows past
``serving.max_body_bytes`` is answered 413 whether or not it declared a ``Content-Length``
(chunked uploads included), and the app gets the buffered body replayed — or, when the
:class:`Shortcut` takes the request, the route's handler gets it directly.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from typing import Any

from fastapi import BackgroundTasks, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from flywheel.serving.metrics import Metrics

OTHER = "other"
_logger = logging.getLogger(__name__)


class Observe:
    """Rejects oversized bodies with 413, times requests and counts them by route and status; offers
    each request to the ``shortcut`` before the app."""

    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        max_body_bytes: int,
        paths: frozenset[str],
        shortcut: Shortcut | None = None,
    ) -> None:
        self.app, self.metrics, self.limit, self.paths = app, metrics, max_body_bytes, paths
        self.shortcut = shortcut
        # the metrics' children by label values (a bounded set: routes and status codes): looking
        # one up in prometheus_client validates and locks, on every request
        self._latency: dict[str, Any] = {}
        self._requests: dict[tuple[str, int], Any] = {}

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
        answered: list[float] = []  # when its last byte went out: background tasks run after it

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered.append(time.perf_counter())

        try:
            body = await self._read(scope, receive)
            if body is None:
                response = JSONResponse(
                    {"detail": f"request body exceeds serving.max_body_bytes ({self.limit} bytes)"},
                    status_code=413,
                )
                await response(scope, receive, sending)
                return
            replay = _replay(body, receive)
            if self.shortcut is None or not await self.shortcut(scope, body, replay, sending):
                await self.app(scope, replay, sending)
        except Exception:  # a bug: logged once here (an app-level handler is logged twice), never a trace
            _logger.exception("unhandled error on %s", scope["path"])
            if not status:  # nothing sent yet (a started response cannot be replaced)
                await JSONResponse({"detail": "internal error; see the service log"}, 500)(
                    scope, receive, sending
                )
        finally:
            endpoint = self.endpoint(scope)
            code = status[0] if status else 500
            latency = self._latency.get(endpoint)
            if latency is None:
                latency = self._latency[endpoint] = self.metrics.latency.labels(endpoint)
            latency.observe((answered[0] if answered else time.perf_counter()) - started)
            counted = self._requests.get((endpoint, code))
            if counted is None:
                counted = self._requests[endpoint, code] = self.metrics.requests.labels(endpoint, str(code))
            counted.inc()

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


class Shortcut:
    """One JSON ``POST`` route's plain requests answered without FastAPI's per-request machinery
    (routing, dependency resolution, its exit stacks: a third of a prediction's cost): the body is
    validated by the route's own body field and handed to the route's ``handler`` as
    ``handler(body, state, model, background)`` — the state, the model the ``model`` dependency
    gives, a ``BackgroundTasks`` run after the response as FastAPI runs it; an ``HTTPException`` is
    answered by the app's own handler.

    Anything else — a query string, a header the route reads, no JSON content type, a body FastAPI
    would reject, a ``model`` dependency that refuses (no model loaded), FastAPI's telemetry
    observing the request — is declined before anything ran or was sent, and FastAPI answers it as
    it always did.
    """

    def __init__(self, app: Any, route: Any, handler: Any, state: Any, model: Any) -> None:
        params = list(inspect.signature(handler).parameters.values())
        if [p.name for p in params[:4]] != ["body", "state", "model", "background"] or any(
            p.default is p.empty for p in params[4:]
        ):
            raise TypeError(f"{route.path}'s handler no longer takes (body, state, model, background)")
        self.app, self.route, self.handler, self.state, self.model = app, route, handler, state, model
        self.headers = frozenset(_header_names(route.dependant))

    async def __call__(self, scope: dict, body: bytes, receive: Any, send: Any) -> bool:
        """Answer the request and return True, or return False having done nothing."""
        if (
            scope["path"] != self.route.path
            or scope["method"] != "POST"
            or scope["query_string"]
            or scope.get("root_path")
            or scope.get("fastapi.telemetry")
            or not body
        ):
            return False
        content_type = None
        for name, value in scope["headers"]:
            if name in self.headers:
                return False
            if name == b"content-type" and content_type is None:  # the first, as Starlette reads it
                content_type = value
        if content_type is None or content_type.split(b";")[0].strip().lower() != b"application/json":
            return False
        try:
            decoded = json.loads(body)  # what Starlette's Request.json does
        except Exception:  # not JSON (422), too deep for the parser (400): FastAPI says which
            return False
        value, errors = self.route.body_field.validate(decoded, {}, loc=("body",))
        if errors:
            return False
        try:
            model = await self.model(self.state)
        except HTTPException:
            return False
        background = BackgroundTasks()
        scope["route"] = self.route  # as the router sets it: the metrics' label
        try:
            response = await self.handler(value, self.state, model, background)
        except HTTPException as error:
            response = await self._handled(scope, receive, error)
        else:
            if response.background is None:  # as FastAPI does with a handler's own response
                response.background = background
        await response(scope, receive, send)
        return True

    async def _handled(self, scope: dict, receive: Any, error: HTTPException) -> Any:
        handlers = self.app.exception_handlers  # looked up by class as Starlette does
        handler = next(handlers[cls] for cls in type(error).__mro__ if cls in handlers)
        return await handler(Request(scope, receive), error)


def _header_names(dependant: Any) -> set[bytes]:
    """The headers a route's parameters and dependencies read (as ASGI names)."""
    names = set()
    for param in dependant.header_params:
        names.add(param.alias.lower().encode())
        names.add(param.alias.lower().replace("_", "-").encode())
    for sub in dependant.dependencies:
        names |= _header_names(sub)
    return names
