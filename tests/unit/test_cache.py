"""The prediction cache (``flywheel.serving.cache``): keys that change with everything a score depends
on, the local LRU's eviction and expiry (an injected clock, no sleeping), batch calls, its metrics
(one process and several workers), and a Redis that never answers costing a request no more than the
timeout (a listening socket that stays silent; a real Redis is in tests/integration/test_cache_redis.py)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest, values
from prometheus_client.values import MultiProcessValue

from flywheel.config import CacheConfig
from flywheel.serving import multiprocess
from flywheel.serving.cache import Entry, LocalCache, RedisCache, generation, key, make_cache
from flywheel.serving.metrics import Metrics

ROW = {"tenure_days": 412, "spend_90d": 87.5, "segment": "b2c", "last_order_days": None}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(p: float = 0.3) -> Entry:
    return Entry(ROW, "2024-06-30T00:00:00+00:00", p)


def test_keys_differ_by_use_case_version_generation_and_entity_type() -> None:
    base = key("churn", "3", 1_700_000_000_000_000_000, 5)
    others = [
        key("credit", "3", 1_700_000_000_000_000_000, 5),
        key("churn", "4", 1_700_000_000_000_000_000, 5),
        key("churn", "3", 1_700_000_000_000_000_001, 5),
        key("churn", "3", 1_700_000_000_000_000_000, "5"),
        key("churn", "3", 1_700_000_000_000_000_000, 6),
    ]
    assert len({base, *others}) == 6
    assert key("churn", "3", 1, 5) == base.replace("1700000000000000000", "1")  # deterministic
    # the entity is last and typed: a string id holding the separator cannot pose as another key
    assert key("churn", "3", 1, "5:i6") != key("churn", "3", 1, 5)


def test_the_generation_is_the_watermarks_mtime(tmp_path: Path) -> None:
    watermark = tmp_path / "materialized.json"
    assert generation(watermark) is None  # never materialized
    watermark.write_text('{"through": "2024-06-30"}')
    os.utime(watermark, ns=(1, 1_700_000_000_000_000_000))
    first = generation(watermark)
    assert first == 1_700_000_000_000_000_000
    watermark.write_text('{"through": "2024-06-30"}')  # materialized again, same data time
    os.utime(watermark, ns=(1, 1_700_000_000_000_000_001))
    assert generation(watermark) != first


def test_least_recently_used_entries_are_evicted_first() -> None:
    cache = LocalCache(max_entries=3, ttl_seconds=60)
    cache.put_many([("a", entry(0.1)), ("b", entry(0.2)), ("c", entry(0.3))])
    assert cache.get_many(["a"]) == [entry(0.1)]  # a is now the most recently used
    cache.put_many([("d", entry(0.4))])
    assert cache.get_many(["a", "b", "c", "d"]) == [entry(0.1), None, entry(0.3), entry(0.4)]
    assert cache.entries == 3
    cache.put_many([("c", entry(0.33)), ("e", entry(0.5))])  # rewriting c makes it recent; a goes
    assert cache.get_many(["a", "c", "d", "e"]) == [None, entry(0.33), entry(0.4), entry(0.5)]
    big = LocalCache(max_entries=2, ttl_seconds=60)
    big.put_many([(str(i), entry()) for i in range(5)])  # one batch larger than the cache
    assert big.get_many(["2", "3", "4"]) == [None, entry(), entry()]


def test_entries_expire_after_the_ttl_from_their_write() -> None:
    clock = Clock()
    cache = LocalCache(max_entries=100, ttl_seconds=10, clock=clock)
    cache.put_many([("a", entry(0.1))])
    clock.now += 5
    cache.put_many([("b", entry(0.2))])
    clock.now += 4.9
    assert cache.get_many(["a", "b"]) == [entry(0.1), entry(0.2)]  # a read does not extend the TTL
    clock.now += 0.1  # a's 10 s are over
    assert cache.get_many(["a", "b"]) == [None, entry(0.2)]
    assert cache.entries == 1 and (cache.hits, cache.misses) == (3, 1)  # the expired one is gone
    cache.put_many([("a", entry(0.11))])  # written again: another 10 s
    clock.now += 9
    assert cache.get_many(["a", "b"]) == [entry(0.11), None]


def test_a_write_drops_expired_entries_at_the_cold_end() -> None:
    clock = Clock()
    cache = LocalCache(max_entries=100, ttl_seconds=10, clock=clock)
    cache.put_many([(str(i), entry()) for i in range(5)])
    clock.now += 20
    cache.put_many([("new", entry())])
    assert cache.entries == 1


def test_batches_answer_in_the_order_asked_with_repeats_and_empties() -> None:
    cache = LocalCache(max_entries=10, ttl_seconds=60)
    assert cache.get_many([]) == [] and cache.put_many([]) is None
    multiclass = Entry(ROW, None, [0.2, 0.5, 0.3])
    cache.put_many([("x", entry(0.9)), ("y", multiclass)])
    assert cache.get_many(["y", "nope", "x", "y"]) == [multiclass, None, entry(0.9), multiclass]
    assert (cache.hits, cache.misses, cache.errors) == (3, 1, 0)


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_hits_misses_and_entries_are_exported() -> None:
    metrics = Metrics()
    text = exposition(metrics)  # declared before any lookup, so a scrape and the dashboard have them
    for line in (
        "flywheel_cache_hits_total 0.0",
        "flywheel_cache_errors_total 0.0",
        "flywheel_cache_entries 0.0",
    ):
        assert line in text
    cache = make_cache(CacheConfig(backend="local", max_entries=2), metrics)
    cache.put_many([("a", entry()), ("b", entry()), ("c", entry())])
    cache.get_many(["a", "b", "c", "c"])
    text = exposition(metrics)
    assert "flywheel_cache_hits_total 3.0" in text and "flywheel_cache_misses_total 1.0" in text
    assert "flywheel_cache_entries 2.0" in text and "flywheel_cache_errors_total 0.0" in text


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """prometheus_client's multiprocess mode, files in ``tmp_path`` (as tests/unit/test_metrics.py)."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    monkeypatch.setenv(multiprocess.ENV, str(folder))
    monkeypatch.setenv(multiprocess.WORKERS_ENV, "2")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    yield


def test_each_workers_lru_adds_up_in_the_merged_metrics(workers: None) -> None:
    caches = []
    for pid in (os.getpid(), os.getppid()):  # two "workers", each with its value files and its LRU
        values.ValueClass = MultiProcessValue(lambda pid=pid: pid)
        metrics = Metrics()
        assert metrics.multiprocess
        cache = make_cache(CacheConfig(backend="local"), metrics)
        caches.append((metrics, cache))
    for n, (_, cache) in enumerate(caches, start=1):  # unlabelled: values bound to their worker's files
        cache.put_many([(str(i), entry()) for i in range(n * 2)])
        cache.get_many(["0", "missing"])
    text = exposition(caches[0][0])
    assert "flywheel_cache_entries 6.0" in text  # 2 + 4: livesum
    assert "flywheel_cache_hits_total 2.0" in text and "flywheel_cache_misses_total 2.0" in text


def test_make_cache_follows_the_config() -> None:
    assert make_cache(CacheConfig(backend="none")) is None
    local = make_cache(CacheConfig(backend="local", max_entries=7, ttl_seconds=3))
    assert isinstance(local, LocalCache) and (local.max_entries, local.ttl_seconds) == (7, 3)
    pytest.importorskip("redis")
    # nothing connects at startup: a Redis that is down is a cache that misses
    remote = make_cache(CacheConfig(backend="redis", redis_url="redis://:secret@127.0.0.1:9/4"))
    assert isinstance(remote, RedisCache) and remote.where == "127.0.0.1:9/4"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung or overloaded Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_redis_that_never_answers_costs_a_call_its_timeout_and_is_left_alone_a_while(
    silent_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("redis")
    clock = Clock()
    metrics = Metrics()
    cache = RedisCache(f"redis://127.0.0.1:{silent_server}/1", 60, metrics, retry_seconds=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="flywheel.serving.cache"):
        started = time.perf_counter()
        assert cache.get_many(["a", "b"]) == [None, None]
        assert time.perf_counter() - started < 0.5  # the 50 ms read timeout, once (no retries)
        assert (cache.hits, cache.misses, cache.errors) == (0, 2, 1)
        started = time.perf_counter()
        cache.put_many([("a", entry())])  # within the retry pause: skipped without calling Redis
        assert cache.get_many(["a"]) == [None]
        assert time.perf_counter() - started < 0.01
        assert (cache.misses, cache.errors) == (3, 1)
        clock.now += 1  # the pause is over: tried again, failed again, still one log line
        started = time.perf_counter()
        cache.put_many([("a", entry())])
        assert time.perf_counter() - started < 0.5
        assert cache.errors == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()
    text = exposition(metrics)
    assert "flywheel_cache_errors_total 2.0" in text and "flywheel_cache_misses_total 3.0" in text
