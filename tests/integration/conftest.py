"""Fixtures of the integration tests that run the prediction service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN


@pytest.fixture
def served_copy(served_workdir: Workdir, tmp_path: Path) -> Workdir:
    """A writable copy of the session's served workdir (champion registered, online store filled)."""
    shutil.copytree(served_workdir.root, tmp_path / "wd")
    return Workdir.at(tmp_path / "wd")


@pytest.fixture
def serving_config(training_config: FlywheelConfig) -> FlywheelConfig:
    """The test config with admin enabled, no background polling and a short log flush."""
    return apply_overrides(
        training_config,
        {
            "serving.admin_token": ADMIN_TOKEN,
            "serving.poll_seconds": 3600,
            "serving.max_batch": 600,
            "serving.log_flush_seconds": 0.1,
        },
    )
