"""The dashboard's endpoints on the prediction service: ``/dashboard`` (the page),
``/dashboard/plotly.min.js`` (the chart library) and ``/dashboard/reports/<drift page>``.

Read-only and open, as ``/metrics`` is. This module is light on purpose (the service imports it at
start): the page's modules are imported, and its data gathered, on the first request. Handlers are
plain functions, so FastAPI runs them in its thread pool and the file and registry reads never hold
the event loop; a built page is reused for :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from flywheel.errors import FlywheelError

CACHE_SECONDS = 5.0
# the HTML page `flywheel monitor drift` writes beside each drift report: nothing else is served
DRIFT_PAGE = re.compile(r"drift-[0-9]{8}T[0-9]{6,12}\.html")
router = APIRouter(include_in_schema=False)  # a page for people, not part of the API's schema
_caches_lock = threading.Lock()


class PageCache:
    """The newest page built, rebuilt when older than ``seconds``; one build at a time (requests
    arriving meanwhile wait for it rather than build their own)."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._page: str | None = None
        self._built = 0.0

    def get(self, build: Callable[[], str]) -> str:
        with self._lock:
            if self._page is None or time.monotonic() - self._built > self.seconds:
                self._page = build()
                self._built = time.monotonic()
            return self._page


def _cache(request: Request) -> PageCache:
    with _caches_lock:
        cache = getattr(request.app.state, "dashboard_cache", None)
        if cache is None:
            cache = request.app.state.dashboard_cache = PageCache()
        return cache


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    """The monitoring dashboard of the served use case."""
    from flywheel.dashboard import page

    state = request.app.state.flywheel
    html = _cache(request).get(lambda: page.build(state.config, state.workdir, state.client))
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/plotly.min.js")
def plotly_js() -> FileResponse:
    """plotly.js from the ``plotly`` package: the page needs no network."""
    from flywheel.dashboard.assets import plotly_js

    try:
        path = plotly_js()
    except FlywheelError as error:
        raise HTTPException(404, str(error)) from None
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/dashboard/reports/{name}")
def drift_page(name: str, request: Request) -> FileResponse:
    """A drift report's HTML page (``reports/drift-<time>.html``), linked from the dashboard."""
    path = request.app.state.flywheel.workdir.reports / name
    if DRIFT_PAGE.fullmatch(name) is None or not path.is_file():
        raise HTTPException(404, "no such drift report; the dashboard links the newest")
    return FileResponse(path, media_type="text/html")
