"""The ``flywheel`` command as a user runs it: a real process, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    [],
    ["data"],
    ["data", "generate"],
    ["data", "simulate"],
    ["data", "ingest"],
    ["data", "validate"],
    ["data", "status"],
    ["features"],
    ["features", "build"],
    ["features", "dataset"],
    ["features", "apply"],
    ["features", "materialize"],
    ["features", "get"],
    ["features", "check-skew"],
    ["features", "list"],
    ["train"],
    ["evaluate"],
    ["experiments", "list"],
    ["model"],
    ["model", "list"],
    ["model", "describe"],
    ["model", "promote"],
    ["model", "rollback"],
    ["pipeline"],
    ["pipeline", "run"],
    ["pipeline", "list"],
    ["pipeline", "monitor"],
    ["pipeline", "compile"],
    ["step"],
    ["serve"],
    ["predict", "batch"],
    ["monitor"],
    ["monitor", "drift"],
    ["config"],
    ["demo"],
]


def flywheel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flywheel", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = flywheel(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_generate_validate_simulate_status(tmp_path: Path) -> None:
    wd = str(tmp_path / "wd")
    generated = flywheel(
        "--workdir",
        wd,
        "--set",
        "data.generator.products=100",
        "data",
        "generate",
        "--size",
        "400",
        "--start",
        "2024-01-01",
        "--end",
        "2024-09-01",
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stderr
    assert "generated batch gen-20240101-20240901" in generated.stdout
    assert flywheel("--workdir", wd, "data", "validate", cwd=tmp_path).returncode == 0
    simulated = flywheel(
        "--workdir",
        wd,
        "--set",
        "data.generator.customers=400",
        "data",
        "simulate",
        "--days",
        "30",
        "--drift",
        "price_shock",
        cwd=tmp_path,
    )
    assert simulated.returncode == 0, simulated.stderr
    assert "appended batch sim-20240901-20241001" in simulated.stdout
    status = flywheel("--workdir", wd, "data", "status", cwd=tmp_path)
    assert "price_shock" in status.stdout and "generate" in status.stdout
    for command in (["features", "build"], ["features", "apply"], ["features", "materialize"]):
        result = flywheel("--workdir", wd, *command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
    got = flywheel("--workdir", wd, "features", "get", "1", "2", cwd=tmp_path)
    assert got.returncode == 0 and '"customer_id": 2' in got.stdout
    bad = flywheel("--workdir", wd, "features", "get", "abc", cwd=tmp_path)
    assert (
        bad.returncode == 2 and "'abc' is not a customer_id" in bad.stderr and "Traceback" not in bad.stderr
    )
    skew = flywheel("--workdir", wd, "features", "check-skew", cwd=tmp_path)
    assert skew.returncode == 0 and "online equals the latest offline snapshot" in skew.stdout


def test_user_errors_exit_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data:\n  generator:\n    custmers: 5\n")
    result = flywheel("--config", str(config), "data", "generate", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown key 'data.generator.custmers'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    verbose = flywheel("--verbose", "--config", str(config), "data", "generate", cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert flywheel("data", "bogus", cwd=tmp_path).returncode == 2
    assert flywheel("data", "generate", "--size", "many", cwd=tmp_path).returncode == 2


def test_rejected_ingest_prints_the_report(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("id,first_name,created_at\n1,Ann,2024-01-01 10:00:00 UTC\n")
    result = flywheel(
        "--workdir", str(tmp_path / "wd"), "data", "ingest", str(tmp_path / "users.csv"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "missing_column" in result.stderr and "users" in result.stderr and "report:" in result.stderr
    (tmp_path / "users.csv").write_text("id,first_name\n1,Ann\n")
    result = flywheel(
        "--workdir", str(tmp_path / "wd"), "data", "ingest", str(tmp_path / "users.csv"), cwd=tmp_path
    )
    assert result.returncode == 1 and "users.created_at (missing)" in result.stderr
