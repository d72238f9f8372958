"""One writer at a time per workdir.

Every command that writes to a workdir (data generate/simulate/ingest, features build/dataset/apply/
materialize, train, step, pipeline run, retrain, loop, demo) holds an exclusive, non-blocking
``flock`` on ``<workdir>/.lock`` for its whole run; a second writer fails at once with a message
naming the holder, which the lock file records as JSON ``{pid, command, since}``. The kernel drops
the lock when its process dies, so a kill never leaves the workdir locked.

The lock is reentrant within a thread: the loop tick calls retrain, which runs the pipeline, whose
steps build features and train, and the demo calls all of them in-process. Another thread of the
same process is refused like another process. Readers (the prediction
service, ``model list``, ``monitor drift``, …) never take it.

Whoever takes the lock first in a process also removes staging folders left by a killed writer:
while it holds the lock nobody else can be writing them.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from flywheel.errors import FlywheelError
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class WorkdirBusy(FlywheelError):
    """Another process holds the workdir's write lock."""


@dataclass
class _Held:
    fd: int
    depth: int
    thread: int  # reentrant for this thread only: another thread of the process is another writer
    command: str


# lock file → this process's hold on it; flock is per open file, so a second open() in the same
# process would conflict with the first: reentrancy has to be counted here
_held: dict[Path, _Held] = {}
_guard = threading.Lock()


@contextmanager
def workdir_lock(workdir: Workdir, command: str) -> Iterator[None]:
    """Hold ``workdir``'s write lock for ``command`` (a CLI name such as ``"retrain"``).

    Raises:
        WorkdirBusy: another process holds it; the message names its command, pid and start time.
    """
    path = workdir.lock
    with _guard:
        held = _held.get(path)
        if held is None:
            _held[path] = _acquire(workdir, command)
        elif held.thread == threading.get_ident():
            held.depth += 1
        else:
            raise WorkdirBusy(
                f"another thread of this process (`flywheel {held.command}`) holds the workdir "
                f"{workdir.root}; wait for it to finish"
            )
    try:
        yield
    finally:
        with _guard:
            held = _held[path]
            held.depth -= 1
            if held.depth == 0:
                del _held[path]
                _release(held.fd)


def locks_workdir(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function taking a ``workdir`` argument so that it runs under :func:`workdir_lock`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            workdir = signature.bind_partial(*args, **kwargs).arguments["workdir"]
            with workdir_lock(workdir, command):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def _acquire(workdir: Workdir, command: str) -> _Held:
    try:
        workdir.root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FlywheelError(f"{workdir.root} is a file, not a workdir folder") from None
    # no O_TRUNC: the holder's record must survive a failed attempt to take the lock
    fd = os.open(workdir.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise WorkdirBusy(_busy_message(workdir, holder)) from None
    try:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "command": command, "since": since}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        remove_staging_leftovers(workdir)
    except BaseException:
        _release(fd)
        raise
    return _Held(fd, 1, threading.get_ident(), command)


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # an empty file says nobody holds it
    finally:
        os.close(fd)  # closing drops the flock


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # the holder is between taking the lock and writing its record
        return {}


def _busy_message(workdir: Workdir, holder: dict) -> str:
    command = f"`flywheel {holder['command']}`" if holder.get("command") else "flywheel command"
    pid = f" (pid {holder['pid']})" if holder.get("pid") else ""
    since = f" since {holder['since']}" if holder.get("since") else ""
    return (
        f"another {command}{pid} holds the workdir {workdir.root}{since}; "
        "wait for it to finish, or use another --workdir"
    )


def remove_staging_leftovers(workdir: Workdir) -> list[Path]:
    """Delete staging folders a killed writer left; call only while holding the lock."""
    leftovers = workdir.staging_leftovers()
    for folder in leftovers:
        shutil.rmtree(folder, ignore_errors=True)
    if leftovers:
        _logger.warning("removed %d staging folder(s) left by an interrupted command", len(leftovers))
    return leftovers
