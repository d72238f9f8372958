"""Our point-in-time join equals Feast's own ``get_historical_features`` (duckdb offline store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.data_format import ParquetFormat
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.types import Float64, Int64

from flywheel.data.engine import DuckEngine
from flywheel.features.pit import _asof_matches, match_sql, point_in_time_join

BASE = datetime(2024, 1, 1, tzinfo=UTC)
FEATURES = ["f_int", "f_float"]


def random_inputs(seed: int) -> tuple[pa.Table, pa.Table]:
    """Features and entity rows with the edge cases: rows before any feature, exact-timestamp ties
    (also between feature rows, broken by created timestamp), TTL edges and duplicated entity rows."""
    rng = np.random.default_rng(seed)
    n_keys, n_features, n_entities = 40, 600, 500
    keys = rng.integers(1, n_keys + 1, n_features)
    days = rng.integers(0, 60, n_features)
    feature_ts = [BASE + timedelta(days=int(d)) for d in days]
    # created timestamps are distinct, so a tie on feature_timestamp has one right answer
    created = [
        t + timedelta(hours=int(h), seconds=i)
        for i, (t, h) in enumerate(zip(feature_ts, rng.integers(0, 5, n_features), strict=True))
    ]
    features = pa.table(
        {
            "customer_id": keys.astype(np.int64),
            "feature_timestamp": pa.array(feature_ts, pa.timestamp("us", "UTC")),
            "created_timestamp": pa.array(created, pa.timestamp("us", "UTC")),
            "f_int": rng.integers(0, 1000, n_features).astype(np.int64),
            "f_float": rng.normal(size=n_features),
        }
    )
    entity_keys = rng.integers(1, n_keys + 5, n_entities)  # some keys have no features at all
    choice = rng.random(n_entities)
    ts = []
    for i in range(n_entities):
        if choice[i] < 0.25:  # exactly on a feature timestamp
            ts.append(feature_ts[rng.integers(0, n_features)])
        elif choice[i] < 0.4:  # exactly on a TTL edge of a feature row (feature_ts + ttl), or just past it
            ts.append(
                feature_ts[rng.integers(0, n_features)] + timedelta(days=7, seconds=int(rng.integers(0, 2)))
            )
        elif choice[i] < 0.5:  # before any feature
            ts.append(BASE - timedelta(days=int(rng.integers(1, 10))))
        else:
            ts.append(BASE + timedelta(seconds=int(rng.integers(0, 70 * 86400))))
    entities = pa.table(
        {
            "customer_id": entity_keys.astype(np.int64),
            "event_timestamp": pa.array(ts, pa.timestamp("us", "UTC")),
            "label": rng.integers(0, 2, n_entities).astype(np.int64),
        }
    )
    duplicated = entities.take(pa.array(rng.integers(0, n_entities, 50)))
    return features, pa.concat_tables([entities, duplicated])


def feast_join(tmp_path: Path, features: pa.Table, entities: pa.Table, ttl: timedelta | None) -> pd.DataFrame:
    path = tmp_path / "features.parquet"
    pq.write_table(features, path)
    store = FeatureStore(
        config=RepoConfig(
            project="conformance",
            provider="local",
            registry=str(tmp_path / "registry.db"),
            offline_store=DuckDBOfflineStoreConfig(),
            online_store=SqliteOnlineStoreConfig(path=str(tmp_path / "o.db")),
            entity_key_serialization_version=3,
            repo_path=str(tmp_path),
        )
    )
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="features_customer",
        entities=[customer],
        ttl=ttl or timedelta(0),
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="f_int", dtype=Int64),
            Field(name="f_float", dtype=Float64),
        ],
        source=FileSource(
            path=str(path),
            timestamp_field="feature_timestamp",
            created_timestamp_column="created_timestamp",
            file_format=ParquetFormat(),
        ),
    )
    store.apply([customer, view])
    frame = entities.to_pandas()
    return store.get_historical_features(
        entity_df=frame, features=[f"features_customer:{name}" for name in FEATURES]
    ).to_df()


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["customer_id", "event_timestamp", "label", *FEATURES]].copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    frame["f_int"] = frame["f_int"].astype("Float64")
    frame["f_float"] = frame["f_float"].astype("Float64")
    return frame.sort_values(["customer_id", "event_timestamp", "label", "f_int", "f_float"]).reset_index(
        drop=True
    )


@pytest.mark.parametrize("ttl", [timedelta(days=7), None], ids=["ttl-7d", "no-ttl"])
@pytest.mark.parametrize("seed", [1, 2])
def test_our_join_equals_feast(tmp_path: Path, seed: int, ttl: timedelta | None) -> None:
    features, entities = random_inputs(seed)
    expected = canonical(feast_join(tmp_path, features, entities, ttl))
    ours = point_in_time_join(
        entities,
        features,
        entity_key="customer_id",
        entity_timestamp="event_timestamp",
        feature_timestamp="feature_timestamp",
        created_timestamp="created_timestamp",
        feature_names=FEATURES,
        ttl=ttl,
    )
    assert ours.num_rows == entities.num_rows  # nothing dropped or duplicated
    assert ours.column("label").equals(entities.column("label"))  # input order kept
    got = canonical(ours.to_pandas())
    assert len(expected) == len(got)
    assert (
        expected["f_int"].notna().sum() > 100 and expected["f_int"].isna().sum() > 20
    )  # both cases exercised
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize("ttl", [timedelta(days=7), None], ids=["ttl-7d", "no-ttl"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_portable_sql_spark_runs_matches_the_asof_join(seed: int, ttl: timedelta | None) -> None:
    """``match_sql`` (Spark's; run here on DuckDB) finds the rows DuckDB's ASOF join finds, also with
    null keys and times on either side, full ties (the last row wins) and no created column."""
    features, entities = random_inputs(seed)
    rng = np.random.default_rng(seed)
    nulls = lambda n, share: pa.array(rng.random(n) < share)  # noqa: E731
    features = features.set_column(
        0, "customer_id", pc.if_else(nulls(features.num_rows, 0.05), None, features.column("customer_id"))
    )
    entities = entities.set_column(
        0, "customer_id", pc.if_else(nulls(entities.num_rows, 0.05), None, entities.column("customer_id"))
    )
    entities = entities.set_column(
        1,
        "event_timestamp",
        pc.if_else(nulls(entities.num_rows, 0.05), None, entities.column("event_timestamp")),
    )
    features = pa.concat_tables([features, features.slice(0, 30)])  # full ties on (key, ts, created)
    for created in (True, False):
        engine = DuckEngine()
        engine.register_arrow(
            "feature_keys",
            pa.table(
                {
                    "k": features.column("customer_id"),
                    "ts": features.column("feature_timestamp"),
                    "created": features.column("created_timestamp"),
                    "position": pa.array(np.arange(features.num_rows, dtype=np.int64)),
                }
            ),
        )
        engine.register_arrow(
            "entity_keys",
            pa.table(
                {
                    "k": entities.column("customer_id"),
                    "ts": entities.column("event_timestamp"),
                    "row": pa.array(np.arange(entities.num_rows, dtype=np.int64)),
                }
            ),
        )
        asof = _asof_matches(engine, ttl, created).sort_by("row")
        portable = engine.query(match_sql(ttl, created)).sort_by("row")
        assert portable.num_rows == asof.num_rows == entities.num_rows
        assert portable.column("position").equals(asof.column("position")), created
        assert portable.column("matched_ts").equals(asof.column("matched_ts")), created
        assert asof.column("position").null_count < entities.num_rows  # matches exist
