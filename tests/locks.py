"""Hold a workdir's write lock from another process, as a concurrent `flywheel` command would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLD = """
import sys
from flywheel.lock import workdir_lock
from flywheel.workdir import Workdir
with workdir_lock(Workdir.at(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def lock_held_elsewhere(root: Path, command: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``root``'s lock as ``command`` until the block ends; yields the process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()  # ends its read: it releases the lock and exits
        holder.wait(timeout=30)
