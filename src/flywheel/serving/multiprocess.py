"""Metrics of a service with several worker processes (``flywheel serve --workers N``).

Each uvicorn worker has its own memory, so a scrape would report whichever worker answered.
prometheus_client's multiprocess mode makes every counter, histogram and gauge a value in a per-process
file under ``PROMETHEUS_MULTIPROC_DIR``; ``/metrics`` merges the files of all workers. The mode is
chosen when prometheus_client is first imported, so ``serve`` sets the variable (:func:`metrics_dir`)
before any worker starts, and this module imports prometheus_client only inside its functions; a
single worker keeps in-memory metrics, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# set by `serve` beside ENV: files in ENV alone do not make a service of several workers (importing
# Feast sets ENV in the importing process, whose in-process service exports its own registry)
WORKERS_ENV = "FLYWHEEL_METRICS_WORKERS"


@contextlib.contextmanager
def metrics_dir(workers: int) -> Iterator[Path | None]:
    """With more than one worker, a fresh ``PROMETHEUS_MULTIPROC_DIR`` for this service start (under
    the system's temporary folder: ``TMPDIR`` chooses it), removed when the service stops; with one,
    none: in-memory metrics.

    A value inherited from the environment is dropped either way: importing Feast sets the variable
    to a folder of its own in any process that imports it, so a service started by such a process
    (a test, a script) would otherwise mix its counts with that process's and with its siblings'."""
    for name in (ENV, ENV.lower(), WORKERS_ENV):
        os.environ.pop(name, None)
    if workers <= 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="flywheel-metrics-"))
    os.environ[ENV], os.environ[WORKERS_ENV] = str(folder), str(workers)
    try:
        yield folder
    finally:
        for name in (ENV, WORKERS_ENV):
            os.environ.pop(name, None)
        shutil.rmtree(folder, ignore_errors=True)


def enabled() -> bool:
    """Whether this process is a worker of a service ``serve`` started with several workers, whose
    metrics prometheus_client records in the shared files (decided at its import)."""
    from prometheus_client import values

    return WORKERS_ENV in os.environ and bool(getattr(values.ValueClass, "_multiprocess", False))


def forget_dead_workers(folder: Path) -> None:
    """Drop the ``live*`` gauges of workers that are gone. A worker that stops cleanly drops its own
    (:func:`worker_stopped`); one that was killed cannot, and uvicorn's supervisor, which restarts
    it, has no hook to do it."""
    from prometheus_client.multiprocess import mark_process_dead

    for path in folder.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            mark_process_dead(pid, str(folder))


def worker_stopped() -> None:
    """Drop this worker's ``live*`` gauges (its served version, its log writer's state)."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(os.getpid(), os.environ[ENV])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
