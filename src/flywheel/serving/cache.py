"""The prediction cache: an entity's online feature row, its data time and the model's output, kept
so a repeated ``/v1/predict`` or ``/v1/predict/batch`` skips the online-store read and the model call
(the caller still builds a fresh response, request id and prediction-log row).

An entry is keyed by what its score depends on — the use case, the model version that scored it, the
materialization generation (the online store watermark's ``st_mtime_ns``, moved by every
``flywheel features materialize``) and the entity id, typed, so ``5`` and ``"5"`` are two entities.
A champion swap or a rollout's other arm reads another version's keys and a materialization
another generation's, so no change of model or data ever returns a stale score; the old keys are
never read again and leave by LRU eviction or their TTL.

Two backends, chosen by ``serving.cache.backend``: ``local``, an LRU in each worker process, and
``redis``, shared by every worker and replica, whose failures never fail a request (each becomes a
miss, counted; a failed write is skipped). ``none`` turns the cache off (:func:`make_cache` returns
None).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from flywheel.config import CacheConfig

if TYPE_CHECKING:
    from flywheel.serving.metrics import Metrics

_logger = logging.getLogger(__name__)
# the layout of keys and values: a new one starts on empty keys, so replicas of two releases sharing
# one Redis during a rolling deploy never read each other's values
FORMAT = "fw1"


class Entry(NamedTuple):
    """What the cache holds for an entity: its online feature row (JSON scalars), the row's data time
    (ISO, or None) and the model output (a probability, or a list of per-class probabilities)."""

    row: dict[str, Any]
    as_of: str | None
    output: float | list[float]


def key(usecase: str, version: str, generation: int, entity: int | str) -> str:
    """The cache key of ``entity`` scored by model ``version`` on materialization ``generation``.

    The entity is last and typed (``i5`` / ``s5``), so any string id is safe in it; use case names
    and registry versions hold no ``:``."""
    kind = "s" if isinstance(entity, str) else "i"
    return f"{FORMAT}:{usecase}:{version}:{generation}:{kind}{entity}"


def generation(watermark: Path) -> int | None:
    """The materialization generation: the online store watermark's ``st_mtime_ns`` (one ``stat``),
    None before the first materialization (nothing to cache then)."""
    try:
        return watermark.stat().st_mtime_ns
    except FileNotFoundError:
        return None


class PredictionCache(ABC):
    """Batch lookups and writes; ``hits``, ``misses`` and ``errors`` count entities, entities and
    failed operations since the cache was made (mirrored to the service's metrics when given)."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.hits = self.misses = self.errors = 0

    @abstractmethod
    def get_many(self, keys: list[str]) -> list[Entry | None]:
        """The entry of each key, None where the cache holds none (or cannot answer)."""

    @abstractmethod
    def put_many(self, items: list[tuple[str, Entry]]) -> None:
        """Store entries; they expire ``ttl_seconds`` later."""

    @property
    @abstractmethod
    def entries(self) -> int:
        """Entries held (see each backend for what it can know)."""

    def _count(self, hits: int, misses: int, errors: int = 0) -> None:
        self.hits += hits
        self.misses += misses
        self.errors += errors
        if self.metrics is None:
            return
        if hits:
            self.metrics.cache_hits.inc(hits)
        if misses:
            self.metrics.cache_misses.inc(misses)
        if errors:
            self.metrics.cache_errors.inc(errors)
        self.metrics.cache_entries.set(self.entries)


class LocalCache(PredictionCache):
    """A least-recently-used map in this process, bounded by ``max_entries``; an entry expires
    ``ttl_seconds`` after it was written (``clock``: monotonic seconds). Entries are shared, not
    copied: callers must not mutate a row they got or put."""

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(metrics)
        self.max_entries, self.ttl_seconds, self.clock = max_entries, ttl_seconds, clock
        self._entries: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self._lock = threading.Lock()  # handlers run on the event loop, but a thread may call too

    @property
    def entries(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[str]) -> list[Entry | None]:
        now = self.clock()
        found: list[Entry | None] = []
        hits = 0
        with self._lock:
            held = self._entries
            for k in keys:
                item = held.get(k)
                if item is None:
                    found.append(None)
                elif item[0] <= now:  # expired: a miss, and gone
                    del held[k]
                    found.append(None)
                else:
                    held.move_to_end(k)
                    found.append(item[1])
                    hits += 1
        self._count(hits, len(keys) - hits)
        return found

    def put_many(self, items: list[tuple[str, Entry]]) -> None:
        now = self.clock()
        expires = now + self.ttl_seconds
        with self._lock:
            held = self._entries
            for k, entry in items:
                held[k] = (expires, entry)
                held.move_to_end(k)
            while len(held) > self.max_entries:
                held.popitem(last=False)
            # expired entries at the cold end go now rather than when evicted, so ``entries`` counts
            # what can still be served (one read when none has expired; each entry is dropped once)
            while held and next(iter(held.values()))[0] <= now:
                held.popitem(last=False)
        self._count(0, 0)


class RedisCache(PredictionCache):
    """Entries in a Redis database (``redis://host:port/db``), shared by every worker and replica:
    one MGET per lookup, one pipeline of ``SET … PX`` per write, values as compact JSON.

    A failure (refused, timed out, an error reply) never fails or stalls the request: calls time out
    after ``timeout_seconds`` and are not retried, the lookup answers misses and the write is
    skipped, each failed call is one error. After a failure Redis is left alone for
    ``retry_seconds`` (lookups answer misses at once, no error counted), then the next call tries
    again; the log says so once per streak of failures and once when Redis answers again.

    ``entries`` is what this process wrote whose TTL has not run out, not the database's size: the
    gauge adds up over workers and the dashboard over replicas, which a server-wide figure reported
    by each would multiply. It over-counts a key two workers wrote at once and does not see keys
    Redis evicted (``maxmemory``) or a ``FLUSHDB``."""

    def __init__(
        self,
        url: str,
        ttl_seconds: float,
        metrics: Metrics | None = None,
        timeout_seconds: float = 0.05,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as error:
            raise RuntimeError(
                "serving.cache.backend redis needs redis-py: pip install 'flywheel-mlops[redis]'"
            ) from error
        super().__init__(metrics)
        self.ttl_seconds, self.retry_seconds, self.clock = ttl_seconds, retry_seconds, clock
        self._ttl_ms = max(1, round(ttl_seconds * 1000))  # PX: a TTL under a second or with a fraction
        # redis-py's default retries a failed call three times with backoff (~70 ms on a refused port)
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.where = _where(self._client.connection_pool.connection_kwargs)  # no password
        self._retry_at = 0.0  # after a failure, when to call Redis again
        self._failing = False
        self._written: deque[list[int]] = deque()  # [expiry second, entries written], oldest first
        self._live = 0

    @property
    def entries(self) -> int:
        now = self.clock()
        while self._written and self._written[0][0] <= now:
            self._live -= self._written.popleft()[1]
        return self._live

    def get_many(self, keys: list[str]) -> list[Entry | None]:
        if not keys:
            return []
        if self.clock() < self._retry_at:
            self._count(0, len(keys))
            return [None] * len(keys)
        try:
            values = self._client.mget(keys)
        except self._errors as error:
            self._failed(error)
            self._count(0, len(keys), 1)
            return [None] * len(keys)
        self._answered()
        found: list[Entry | None] = []
        unreadable = 0
        for value in values:
            entry = None
            if value is not None:
                try:
                    row, as_of, output = json.loads(value)
                    entry = Entry(row, as_of, output)
                except (ValueError, TypeError):  # not this format's: a miss (overwritten when scored)
                    unreadable += 1
            found.append(entry)
        hits = sum(entry is not None for entry in found)
        self._count(hits, len(keys) - hits, unreadable)
        return found

    def put_many(self, items: list[tuple[str, Entry]]) -> None:
        if not items or self.clock() < self._retry_at:
            return
        pipe = self._client.pipeline(transaction=False)
        written = unwritable = 0
        for k, entry in items:
            try:
                value = json.dumps(entry, separators=(",", ":"))
            except (TypeError, ValueError):  # e.g. a numpy float32 output: skipped, counted
                unwritable += 1
                continue
            pipe.set(k, value, px=self._ttl_ms)
            written += 1
        try:
            if written:
                pipe.execute()
        except self._errors as error:
            self._failed(error)
            self._count(0, 0, 1 + unwritable)
            return
        self._answered()
        self._wrote(written)
        self._count(0, 0, unwritable)

    def _wrote(self, count: int) -> None:
        if not count:
            return
        expires = math.ceil(self.clock() + self.ttl_seconds)  # by whole seconds: O(TTL) memory
        if self._written and self._written[-1][0] == expires:
            self._written[-1][1] += count
        else:
            self._written.append([expires, count])
        self._live += count

    def _failed(self, error: Exception) -> None:
        self._retry_at = self.clock() + self.retry_seconds
        if not self._failing:
            _logger.warning(
                "prediction cache: Redis at %s failed (%s: %s); answering without it, retried every %g s",
                self.where,
                type(error).__name__,
                error,
                self.retry_seconds,
            )
            self._failing = True

    def _answered(self) -> None:
        if self._failing:
            _logger.info("prediction cache: Redis at %s answers again", self.where)
            self._failing = False


def _where(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"{kwargs['path']} db {kwargs.get('db', 0)}"
    return f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"


def make_cache(config: CacheConfig, metrics: Metrics | None = None) -> PredictionCache | None:
    """The cache ``serving.cache`` chooses; None when it is off (``backend: none``). Nothing connects
    here: a Redis that is down at startup is a cache that misses until it answers."""
    if config.backend == "none":
        return None
    if config.backend == "local":
        return LocalCache(config.max_entries, config.ttl_seconds, metrics)
    return RedisCache(config.redis_url, config.ttl_seconds, metrics)
