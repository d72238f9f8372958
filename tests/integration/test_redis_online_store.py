"""The online store switched to Redis by configuration: a real redis-server, the same guarantees."""

from __future__ import annotations

import shutil
from pathlib import Path

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import online, repo
from flywheel.workdir import Workdir
from tests.servers import redis_server


def test_redis_online_store_serves_the_latest_snapshots(
    featured_workdir: Workdir, small_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(featured_workdir.root, workdir.root)
    with redis_server(tmp_path) as address:
        config = apply_overrides(
            small_config,
            {"features.online_store.type": "redis", "features.online_store.connection_string": address},
        )
        online.apply(config, workdir)
        assert repo.store_yaml(config)["online_store"] == {"type": "redis", "connection_string": address}
        assert "type: redis" in (workdir.feature_repo / "feature_store.yaml").read_text()
        result = online.materialize(config, workdir)
        assert result.written > 100
        report = online.check_skew(config, workdir, sample=200)
        assert report.ok, report.mismatches[:5]
        again = online.materialize(config, workdir)  # the same snapshots again: nothing is older
        assert again.skipped_older == 0 and again.written == result.written
