"""The CLI under misuse (issue 11, items 7, 13, 15, 16): concurrent writers, bad input files and
options, crash leftovers and mistyped workdirs. Each case is one line on stderr, exit 1, no traceback,
and nothing created or half-written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig
from flywheel.features import dataset
from flywheel.lock import workdir_lock
from flywheel.workdir import Workdir
from tests.integration.test_cli import flywheel
from tests.locks import lock_held_elsewhere


def assert_one_line_error(result, *expected: str) -> str:
    """Exit 1 with exactly one line on stderr, holding every ``expected`` text; returns the line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# ---- item 7: one writer at a time per workdir ---------------------------------------------------

WRITERS = [
    ["retrain", "--force"],
    ["retrain", "--check-only"],
    ["pipeline", "run"],
    ["loop", "--once"],
    ["features", "build"],
    ["features", "materialize"],
    ["train"],
    ["data", "ingest", "users.csv"],
    ["model", "promote", "1"],
    ["model", "rollback"],
]


@pytest.mark.parametrize("command", WRITERS, ids=" ".join)
def test_a_writer_is_refused_while_another_flywheel_retrain_holds_the_workdir(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text("id,created_at\n1,2024-01-01 10:00:00\n")
    root = tmp_path / "wd"
    root.mkdir()
    with lock_held_elsewhere(root, "retrain") as holder:
        result = flywheel("--workdir", str(root), *command, cwd=tmp_path)
    line = assert_one_line_error(
        result, f"another `flywheel retrain` (pid {holder.pid}) holds the workdir", "since"
    )
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line)
    assert sorted(p.name for p in root.iterdir()) == [".lock"]  # the refused command wrote nothing


def test_dataset_builders_never_share_a_staging_folder(
    featured_workdir: Workdir, small_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Regression: every builder of a dataset id staged into `datasets/.staging-<id>`, so a second
    builder deleted and refilled the folder the first was writing."""
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(featured_workdir.root, workdir.root)
    dataset_id = (workdir.datasets / "LATEST").read_text().strip()
    with workdir_lock(workdir, "features dataset"):  # held: the staging below is "another builder's"
        other = workdir.datasets / f".staging-{dataset_id}"
        (other / "train.parquet").mkdir(parents=True)
        result = dataset.build(small_config, workdir)
        assert result.dataset_id == dataset_id
        assert (other / "train.parquet").is_dir(), "the builder used another builder's staging folder"


# ---- item 13: one-line errors instead of tracebacks -----------------------------------------------


def test_ingest_of_a_non_utf8_csv_names_the_file_and_the_encoding(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_bytes("id,first_name,created_at\n1,Jos\xe9,2024-01-01\n".encode("latin-1"))
    result = flywheel("--workdir", str(tmp_path / "wd"), "data", "ingest", "users.csv", cwd=tmp_path)
    assert_one_line_error(result, "users.csv", "expected UTF-8 text")


def test_a_binary_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 4)
    result = flywheel("--config", "model.bin", "config", cwd=tmp_path)
    assert_one_line_error(result, "model.bin", "expected a UTF-8 YAML config")


def test_a_set_value_that_is_not_yaml_is_a_one_line_error(tmp_path: Path) -> None:
    result = flywheel("--set", "serving.port=[1,", "config", cwd=tmp_path)
    assert_one_line_error(result, "--set 'serving.port=[1,'", "not valid YAML")


@pytest.mark.parametrize(
    "command",
    [["model", "list"], ["pipeline", "list"], ["retrain", "--check-only"], ["data", "status"]],
    ids=" ".join,
)
def test_a_workdir_that_is_a_file_is_refused(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "wd").write_text("not a folder")
    result = flywheel("--workdir", str(tmp_path / "wd"), *command, cwd=tmp_path)
    assert_one_line_error(result, f"{tmp_path / 'wd'} is a file, not a workdir folder")
    assert (tmp_path / "wd").read_text() == "not a folder"


# ---- item 15: crash leftovers are removed by the next writer --------------------------------------


def test_the_next_writing_command_removes_staging_folders_a_killed_writer_left(
    lake_copy: Workdir, tmp_path: Path
) -> None:
    leftovers = [
        lake_copy.staging / "sim-20240701-20240708-1a2b3c4d",
        lake_copy.features / ".staging-5e6f7a8b",
        lake_copy.datasets / ".staging-ds-0123456789ab-9c0d1e2f",
    ]
    for folder in leftovers:
        (folder / "orders").mkdir(parents=True)
        (folder / "orders" / "part-0.parquet").write_bytes(b"half-written")
    result = flywheel("--workdir", str(lake_copy.root), "data", "simulate", "--days", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [folder for folder in leftovers if folder.exists()] == []


# ---- item 16: a command that reads a workdir never creates one ------------------------------------

READERS = [
    ["model", "list"],
    ["pipeline", "list"],
    ["retrain", "--check-only"],
    ["experiments", "list"],
    ["data", "status"],
    ["monitor", "performance"],
    ["features", "list"],
    ["serve"],
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_refuses_a_missing_workdir_and_creates_nothing(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo"
    result = flywheel("--workdir", str(missing), *command, cwd=tmp_path)
    assert_one_line_error(result, f"no workdir at {missing}", "`flywheel data generate`")
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
