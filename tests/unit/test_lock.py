"""The workdir write lock: one writer process at a time, reentrant inside it, leftovers cleaned."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel.errors import FlywheelError
from flywheel.lock import WorkdirBusy, locks_workdir, workdir_lock
from flywheel.workdir import Workdir
from tests.locks import lock_held_elsewhere


def test_a_second_process_is_refused_with_the_holders_command_pid_and_time(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    with lock_held_elsewhere(workdir.root, "retrain") as holder:
        with pytest.raises(WorkdirBusy) as refused, workdir_lock(workdir, "pipeline run"):
            pytest.fail("took a lock another process holds")
        message = str(refused.value)
        assert f"another `flywheel retrain` (pid {holder.pid}) holds the workdir {workdir.root}" in message
        assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", message)
        record = json.loads(workdir.lock.read_text())  # the refused attempt left the record intact
        assert (record["pid"], record["command"]) == (holder.pid, "retrain")
    with workdir_lock(workdir, "pipeline run"):  # released when the holder finished
        assert json.loads(workdir.lock.read_text())["command"] == "pipeline run"


def test_lock_is_reentrant_within_a_process_and_released_by_the_outermost_holder(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")

    @locks_workdir("features build")
    def build(workdir: Workdir) -> str:
        return json.loads(workdir.lock.read_text())["command"]

    @locks_workdir("loop")
    def tick(config: object, workdir: Workdir) -> str:
        with workdir_lock(workdir, "retrain"):
            return build(workdir=workdir)

    assert tick(None, workdir) == "loop"  # the outermost holder is the one named
    assert workdir.lock.read_text() == ""
    with lock_held_elsewhere(workdir.root, "data ingest"):  # another process can take it now
        pass


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    with lock_held_elsewhere(workdir.root, "retrain") as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with workdir_lock(workdir, "retrain"):
            pass


def test_taking_the_lock_removes_staging_leftovers_but_not_the_holders_own(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    leftovers = [
        workdir.staging / "ingest-abc-1a2b3c4d",
        workdir.features / ".staging-5e6f7a8b",
        workdir.datasets / ".staging-ds-0123456789ab",
    ]
    for folder in leftovers:
        (folder / "part").mkdir(parents=True)
    (workdir.features / "snapshots").mkdir()
    with workdir_lock(workdir, "features build"):
        assert not any(folder.exists() for folder in leftovers)
        assert (workdir.features / "snapshots").is_dir()
        mine = workdir.features / ".staging-in-progress"
        mine.mkdir()
        with workdir_lock(workdir, "features dataset"):  # reentrant: the holder's staging is in use
            assert mine.is_dir()


def test_a_workdir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "wd").write_text("not a folder")
    with (
        pytest.raises(FlywheelError, match=r"wd is a file, not a workdir folder") as refused,
        workdir_lock(Workdir.at(tmp_path / "wd"), "train"),
    ):
        pass
    assert "\n" not in str(refused.value)


def test_an_error_inside_the_lock_releases_it(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    with pytest.raises(RuntimeError), workdir_lock(workdir, "train"):
        raise RuntimeError("a bug in the command")
    probe = "import sys, fcntl; fcntl.flock(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    assert subprocess.run([sys.executable, "-c", probe, str(workdir.lock)]).returncode == 0


def test_another_thread_of_the_same_process_is_refused(tmp_path: Path) -> None:
    """Regression (review): reentrancy counted per process let two threads write at once."""
    import threading

    workdir = Workdir.at(tmp_path / "wd")
    refused: list[str] = []

    def second_writer() -> None:
        try:
            with workdir_lock(workdir, "features build"):
                refused.append("entered")
        except WorkdirBusy as error:
            refused.append(str(error))

    with workdir_lock(workdir, "retrain"):
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join()
    assert len(refused) == 1 and "another thread of this process (`flywheel retrain`)" in refused[0]
    with workdir_lock(workdir, "features build"):  # released: any thread may take it now
        pass
