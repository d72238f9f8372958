"""Ctrl-C at safe points.

Inside :func:`deferred_sigint` (the pipeline runner uses it), the first Ctrl-C only *requests*
cancellation; long operations call :func:`check` where stopping leaves nothing half-written —
between pipeline steps, Optuna trials and feature chunks — and :class:`Cancelled` is raised there.
A KeyboardInterrupt landing inside an MLflow or SQLite write could otherwise leave the run store
unable to record the cancellation. A second Ctrl-C interrupts at once, as usual.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_logger = logging.getLogger(__name__)
_requested = threading.Event()


class Cancelled(KeyboardInterrupt):
    """Ctrl-C, raised at a safe point."""


def check() -> None:
    """Raise :class:`Cancelled` if Ctrl-C was pressed; call where stopping is safe."""
    if _requested.is_set():
        raise Cancelled("cancelled by the user (Ctrl-C)")


def request() -> None:
    """Ask running work to stop at its next safe point (what the first Ctrl-C does)."""
    _requested.set()


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """The first SIGINT requests cancellation; a second raises KeyboardInterrupt immediately. Only in
    the main thread (signal handlers live there); elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if _requested.is_set():
            raise KeyboardInterrupt
        _requested.set()
        _logger.warning("cancelling at the next safe point; press Ctrl-C again to stop at once")

    _requested.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
