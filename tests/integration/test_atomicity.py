"""A commit killed with SIGKILL midway leaves no half batch visible, and the next commit cleans up."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir
from tests.conftest import SMALL

# The child process runs a real simulate commit and SIGKILLs itself right after the n-th call of
# ``os.<function>`` inside the lake module (or right before it): a crash between two steps of the
# commit protocol: after the first table folder moved, after the second, before the manifest swap.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import date
    import flywheel.data.lake as lake_module
    from flywheel.config import apply_overrides, default_config
    from flywheel.data import ops
    from flywheel.workdir import Workdir

    function, nth, when = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    real = getattr(os, function)
    calls = []

    def crashing(*args, **kwargs):
        calls.append(args)
        if when == "before" and len(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if when == "after" and len(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    class PatchedOs:
        def __getattr__(self, name):
            return crashing if name == function else getattr(os, name)

    lake_module.os = PatchedOs()
    overrides = {
        k: (date.fromisoformat(v) if k.endswith(("start", "end")) else v) for k, v in OVERRIDES.items()
    }
    config = apply_overrides(default_config(), overrides)
    ops.simulate(config, Workdir.at(sys.argv[1]), days=15, batch_id="crashed")
    """
).replace("OVERRIDES", repr({k: str(v) if hasattr(v, "isoformat") else v for k, v in SMALL.items()}))


@pytest.mark.parametrize(
    ("function", "nth", "when"), [("rename", 1, "after"), ("rename", 2, "after"), ("replace", 1, "before")]
)
def test_killed_commit_leaves_the_lake_as_it_was(
    lake_copy: Workdir, small_config: FlywheelConfig, function: str, nth: int, when: str
) -> None:
    manifest = lake_copy.manifest.read_bytes()
    rows = {name: Lake(lake_copy, CHURN).read(name).num_rows for name in ("users", "orders", "order_items")}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(lake_copy.root), function, str(nth), when],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    lake = Lake(lake_copy, CHURN)
    assert lake_copy.manifest.read_bytes() == manifest
    assert lake.batch("crashed") is None
    assert {name: lake.read(name).num_rows for name in rows} == rows
    leftovers = list(lake_copy.raw.glob("*/batch=crashed"))
    if function == "rename":
        assert leftovers, "the crash should have happened after a folder was moved"

    # the next commit removes the orphans and succeeds
    result = ops.simulate(small_config, lake_copy, days=15, batch_id="crashed")
    assert result.created
    assert ops.validate(CHURN, lake_copy).ok
    files = {f for t in Lake(lake_copy, CHURN).batch("crashed")["tables"].values() for f in t["files"]}
    on_disk = {str(p.relative_to(lake_copy.lake)) for p in lake_copy.raw.glob("*/batch=crashed/*")}
    assert on_disk == files
