"""The prediction cache on a real redis-server: values round-trip exactly, entries expire with their
TTL, a value of another format is a miss, and a Redis that stops makes lookups and writes count an
error and answer misses at once, until it is back on the same port, when the same cache object
serves again."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from flywheel.config import CacheConfig
from flywheel.serving.cache import Entry, RedisCache, key, make_cache
from flywheel.serving.metrics import Metrics
from tests.servers import ensure_apt_package, redis_server

redis = pytest.importorskip("redis")

ROW = {"tenure_days": 412, "spend_90d": 87.5, "segment": "b2c", "last_order_days": None, "vip": True}


def url(address: str) -> str:
    return f"redis://{address}/3"


def test_entries_round_trip_and_expire(tmp_path: Path) -> None:
    with redis_server(tmp_path) as address:
        cache = make_cache(CacheConfig(backend="redis", redis_url=url(address), ttl_seconds=1), Metrics())
        assert isinstance(cache, RedisCache)
        binary = Entry(ROW, "2024-06-30T00:00:00+00:00", 0.1 + 0.2)  # a float JSON must keep exactly
        multiclass = Entry({**ROW, "segment": "b2b"}, None, [0.2, 0.5, 0.30000000000000004])
        as_int, as_str = key("churn", "3", 17, 5), key("churn", "3", 17, "5")
        cache.put_many([(as_int, binary), (as_str, multiclass)])
        assert cache.get_many([as_str, key("churn", "4", 17, 5), as_int]) == [multiclass, None, binary]
        assert (cache.hits, cache.misses, cache.errors) == (2, 1, 0)
        client = redis.Redis.from_url(url(address))
        assert 0 < client.pttl(as_int) <= 1000  # the configured TTL, set by the write
        assert len(client.get(as_int)) < 150  # compact JSON
        assert cache.entries == 2
        time.sleep(1.2)
        assert cache.get_many([as_int, as_str]) == [None, None]
        assert client.dbsize() == 0


def test_a_value_of_another_format_is_a_miss_and_an_unwritable_one_is_skipped(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with redis_server(tmp_path) as address:
        cache = RedisCache(url(address), ttl_seconds=60)
        client = redis.Redis.from_url(url(address))
        client.set("garbage", b"\x80not json")
        client.set("short", b"[1, 2]")
        assert cache.get_many(["garbage", "short"]) == [None, None]
        assert (cache.misses, cache.errors) == (2, 2)
        good = Entry(ROW, None, 0.5)
        cache.put_many([("float32", Entry(ROW, None, np.float32(0.5))), ("good", good)])
        assert cache.errors == 3 and cache.get_many(["float32", "good"]) == [None, good]


@contextmanager
def redis_on(port: int, folder: Path) -> Iterator[None]:
    """A redis-server on ``port`` (``tests.servers.redis_server`` picks a free port of its own, and
    a restart must come back where the cache points)."""
    binary = ensure_apt_package("redis-server", "redis-server")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def timed(call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call(*args)
    return result, time.perf_counter() - started


def test_a_stopped_redis_costs_misses_not_time_and_the_cache_recovers_on_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    entry = Entry(ROW, None, 0.7)
    with redis_server(tmp_path) as address:
        cache = RedisCache(url(address), ttl_seconds=60, metrics=metrics, retry_seconds=0.3)
        cache.put_many([("a", entry)])
        assert cache.get_many(["a"]) == [entry]
    port = int(address.rsplit(":", 1)[1])
    with caplog.at_level(logging.INFO, logger="flywheel.serving.cache"):
        # stopped: the pooled connection is dead and the port refuses
        found, seconds = timed(cache.get_many, ["a", "b"])
        assert found == [None, None] and seconds < 0.2, seconds
        assert (cache.misses, cache.errors) == (2, 1)
        _, seconds = timed(cache.put_many, [("c", entry)])  # within the retry pause: not tried
        assert seconds < 0.01 and cache.errors == 1
        time.sleep(0.35)
        _, seconds = timed(cache.put_many, [("c", entry)])  # tried again: refused again
        assert seconds < 0.2 and cache.errors == 2
        time.sleep(0.35)
        with redis_on(port, tmp_path):
            found, seconds = timed(cache.get_many, ["a"])  # a fresh server: answers, empty
            assert found == [None] and cache.errors == 2 and seconds < 0.2
            cache.put_many([("a", entry)])
            assert cache.get_many(["a"]) == [entry]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO], messages  # once a streak
    assert "answers again" in messages[1][1]
    sample = metrics.registry.get_sample_value
    assert sample("flywheel_cache_errors_total") == 2 and sample("flywheel_cache_hits_total") == 2
