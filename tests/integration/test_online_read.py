"""The service's direct read of Feast's SQLite online store equals Feast's own ``online_read``: the
same rows, values, data times (in any local time zone: Feast converts its stored epochs as local
time), unknown and repeated entities, an entity whose rows carry two times, and the TTL guard."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig
from flywheel.features import online, repo
from flywheel.serving.online_features import OnlineFeatures, SqliteRows
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir


@pytest.fixture(scope="module")
def materialized(featured_workdir: Workdir, small_config: FlywheelConfig, tmp_path_factory) -> Workdir:
    target = tmp_path_factory.mktemp("online-read") / "wd"
    shutil.copytree(featured_workdir.root, target)
    workdir = Workdir.at(target)
    online.apply(small_config, workdir)
    online.materialize(small_config, workdir)
    return workdir


@pytest.fixture
def store(materialized: Workdir, tmp_path: Path) -> Workdir:
    shutil.copytree(materialized.root, tmp_path / "wd")
    return Workdir.at(tmp_path / "wd")


@pytest.fixture(params=["UTC", "America/New_York"])
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _ids(workdir: Workdir) -> list[int]:
    held = online.latest_snapshots(CHURN, workdir).column("customer_id").to_pylist()
    unknown = [max(held) + 1, 0]
    return [*held, *unknown, held[0], held[0]]  # unknown and repeated entities too


def _feast(reader: OnlineFeatures, ids: list[int]) -> tuple[list, list]:
    """``read_timed`` through Feast's ``online_read`` (the path of every other store)."""
    direct, reader._sqlite = reader._sqlite, None
    try:
        return reader.read_timed(ids)
    finally:
        reader._sqlite = direct


def _feast_rows(reader: OnlineFeatures, ids: list[int]) -> list:
    return reader._feast_rows(reader.view, [reader._entity(i) for i in ids])


def test_the_direct_read_returns_feasts_rows(store: Workdir, small_config: FlywheelConfig, zone: str) -> None:
    reader = OnlineFeatures(small_config, store)
    assert isinstance(reader._sqlite, SqliteRows)
    ids = _ids(store)
    feast = _feast_rows(reader, ids)
    assert reader._rows(ids) == feast
    assert [reader._rows([i])[0] for i in ids] == feast  # one entity a query, as /v1/predict reads
    assert feast[-4] == (None, None) and feast[-1] == feast[0]
    values = [v for _, row in feast if row for v in row.values()]
    assert {type(v) for v in values} >= {int, float, str, type(None)}  # every kind the repo writes
    # an entity-less key (a context view's) finds nothing in an entity's view, either way
    nobody = reader._entity_key()
    assert reader._sqlite(reader.view, [reader._sqlite.serialize(nobody)]) == [(None, None)]
    assert reader._feast_rows(reader.view, [nobody]) == [(None, None)]


def test_read_timed_is_the_same_either_way(store: Workdir, small_config: FlywheelConfig) -> None:
    reader = OnlineFeatures(small_config, store)
    ids = _ids(store)
    rows, times = reader.read_timed(ids)
    assert (rows, times) == _feast(reader, ids)
    assert any(row is None for row in rows[:-4])  # some rows older than the TTL: the guard was at work
    assert any(row is not None for row in rows)
    assert reader.read(ids[:1]) == rows[:1]
    assert reader.context() == {}


def test_the_ttl_guard_is_the_same_either_way(store: Workdir, small_config: FlywheelConfig) -> None:
    """A materialization moving the watermark on makes rows stale the same way on both paths."""
    reader = OnlineFeatures(small_config, store)
    ids = _ids(store)
    held = sorted({t for t, _ in reader._rows(ids) if t is not None})
    assert len(held) > 1
    cutoff = held[len(held) // 2]  # the rows of this time and older are stale from now on
    through = cutoff + timedelta(days=small_config.features.ttl_days, seconds=1)
    online.watermark_path(store).write_text(json.dumps({"through": through.isoformat()}))
    rows, times = reader.read_timed(ids)
    assert (rows, times) == _feast(reader, ids)
    kept = {datetime.fromisoformat(t) for t in times if t is not None}
    assert kept and min(kept) > cutoff


def test_an_entity_whose_rows_carry_two_times_gets_its_last_rows_either_way(
    store: Workdir, small_config: FlywheelConfig, zone: str
) -> None:
    """Feast gives an entity the time of its last row (a feature written by an older materialization
    keeps its older time); so does the direct read."""
    reader = OnlineFeatures(small_config, store)
    ids = _ids(store)[:3]
    before = reader._rows(ids)
    path = repo.repo_dir(store) / repo.SQLITE_ONLINE_STORE
    table = f"{small_config.features.project}_{reader.view.name}"
    with sqlite3.connect(path) as con:  # the first row 5 days older, the last one 3: neither min nor max
        for name, days in ((reader.names[0], 5), (reader.names[-1], 3)):
            earlier = f'UPDATE "{table}" SET event_ts = event_ts - ? * 86400 WHERE feature_name = ?'
            con.execute(earlier, (days, name))
    feast = _feast_rows(reader, ids)
    assert reader._rows(ids) == feast
    assert [reader._rows([i])[0] for i in ids] == feast
    assert [t for t, _ in feast] == [t - timedelta(days=3) for t, _ in before]  # the last row's time
