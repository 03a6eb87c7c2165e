"""How many heavy requests (batches) a caller may have in flight at once: a counter, not a rate.

Two implementations of :class:`InFlightLimiter`:

- :class:`ConcurrencyLimiter`: a counter per key in this process (the embedded default: each worker process
  allows ``limit`` on its own);
- :class:`RedisConcurrencyLimiter`: one count per key across every process and node, as leases in a Redis
  sorted set (member: a random lease id, score: when it expires, by Redis's own clock). A released lease is
  removed at once; the lease of a process killed mid-request expires after ``lease_s`` seconds, so a dead node
  cannot hold a caller's slots for ever. Redis down: :class:`waybill.errors.LimitsUnavailable` (fails closed).

:meth:`InFlightLimiter.try_acquire` answers at once — a caller over the limit is refused, never queued — with
a release function to call exactly once (later calls do nothing).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from waybill.ratelimit import shared_store

log = logging.getLogger("waybill.inflight")

# Drop expired leases, then add one if fewer than ARGV[1] are live. Redis's clock (TIME), not the nodes': their
# clocks may differ, and the expiry must mean the same on all of them.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class InFlightLimiter(Protocol):
    limit: int

    def in_flight(self, key: str) -> int:
        """How many of ``key``'s requests hold a slot now."""
        ...

    def try_acquire(self, key: str) -> Callable[[], None] | None:
        """A slot for ``key`` (its release function), or ``None`` when ``key`` holds ``limit`` already."""
        ...


class ConcurrencyLimiter:
    """At most ``limit`` requests in flight per key, in this process (a counter per key)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def try_acquire(self, key: str) -> Callable[[], None] | None:
        with self._lock:
            held = self._in_flight.get(key, 0)
            if held >= self.limit:
                return None
            self._in_flight[key] = held + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._in_flight.get(key, 1) - 1
                # Idle keys are dropped, so the map holds only callers with requests in flight.
                if left > 0:
                    self._in_flight[key] = left
                else:
                    self._in_flight.pop(key, None)

        return release


class RedisConcurrencyLimiter:
    """At most ``limit`` requests in flight per key across every process sharing ``client``'s Redis (leases of
    ``lease_s`` seconds; see the module docstring)."""

    def __init__(self, client: Any, limit: int, *, lease_s: int, name: str = "heavy") -> None:
        if limit < 1 or lease_s < 1:
            raise ValueError("limit and lease_s must be at least 1")
        self.limit = limit
        self.lease_s = lease_s
        self._client = client
        self._prefix = f"wb:inflight:{name}:"
        self._acquire = client.register_script(_ACQUIRE)
        self._count = client.register_script(_COUNT)

    def in_flight(self, key: str) -> int:
        with shared_store():
            return int(self._count(keys=[self._prefix + key]))

    def try_acquire(self, key: str) -> Callable[[], None] | None:
        lease = secrets.token_hex(8)
        redis_key = self._prefix + key
        with shared_store():
            if not self._acquire(keys=[redis_key], args=[self.limit, self.lease_s * 1000, lease]):
                return None
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            try:
                self._client.zrem(redis_key, lease)
            except RedisError as exc:
                # Redis went away during the request: the lease expires by itself after lease_s.
                log.warning("heavy-request lease not released", extra={"error_type": type(exc).__name__})

        return release
