"""Rate limits on the ``limits`` library: moving windows keyed by caller, in-process or shared through Redis.

Every throttle of the service is a :class:`WindowLimiter` (or several of them, :class:`CompositeLimiter`):
at most ``amount`` units per ``window_s`` seconds and key, counted exactly over the last ``window_s`` seconds
(``limits``' moving-window strategy). The storage is ``limits``' in-process ``MemoryStorage`` (one set of
counters per worker process) unless ``WAYBILL_REDIS_URL`` is set: then every process of every node counts in
one Redis, so each limit holds across all of them (:func:`limit_storage`, one per process).

A shared limit fails closed: when Redis cannot be reached (refused, timed out: short timeouts, one retry),
every operation raises :class:`waybill.errors.LimitsUnavailable` (``503`` with ``Retry-After``) instead of
counting in process, which would multiply each limit by the number of processes. The next operation after
Redis is back simply succeeds (the client reconnects; nothing to restart).

How many heavy requests a caller may have in flight is not a rate: see :mod:`waybill.inflight`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from waybill.errors import LimitsUnavailable

log = logging.getLogger("waybill.ratelimit")
# Redis answers a limit's script in well under a millisecond: a request waiting longer is better refused (503)
# at once than holding a worker thread. One retry (no backoff) covers a pooled connection Redis closed meanwhile.
REDIS_TIMEOUT_S = 0.5
REDIS_RETRIES = 1


class WindowState(NamedTuple):
    """What a limit's headers say: ``limit`` units per window, ``remaining`` now, ``reset_at`` (Unix time) when
    the oldest unit counted ages out."""

    limit: int
    remaining: int
    reset_at: float


@contextlib.contextmanager
def shared_store() -> Iterator[None]:
    """Turn a storage failure (Redis down, timed out) into :class:`LimitsUnavailable`: the limit fails closed."""
    try:
        yield
    except (RedisError, StorageError) as exc:
        # The type only: a connection error's text may quote the URL, password included.
        log.warning("limit store unavailable", extra={"error_type": type(exc).__name__})
        raise LimitsUnavailable() from None


class RateLimiter(Protocol):
    burst: float  # the largest cost one hit may ask for

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        """Consume ``cost`` units; return ``None`` if allowed, else seconds until it would be."""
        ...

    def peek(self, key: str, cost: float = 1.0) -> float | None:
        """Like :meth:`hit` without consuming anything."""
        ...

    def state(self, key: str) -> WindowState:
        """The limit, what remains of it for ``key`` and when its oldest unit ages out (the answer's headers)."""
        ...


def memory_storage() -> Storage:
    """A fresh in-process storage (counters of one worker process)."""
    return MemoryStorage()


def redis_storage(redis_url: str) -> Storage:
    """``limits``' Redis storage: every process using the same URL shares the counters. Nothing is contacted
    yet (a node starts while Redis is down, and serves ``503`` until it is back)."""
    storage = storage_from_string(redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                                  retry=Retry(NoBackoff(), REDIS_RETRIES))  # type: ignore[arg-type]
    assert isinstance(storage, Storage)  # a redis:// URL names the synchronous storage
    return storage


def limit_storage(redis_url: str | None) -> Storage:
    """The one storage of a process's limits: Redis (shared by every process and node) when configured, else
    this process's memory (each process then enforces every limit on its own)."""
    return redis_storage(redis_url) if redis_url else memory_storage()


class WindowLimiter:
    """At most ``amount`` units per ``window_s`` seconds for each key (a moving window of ``limits``).

    A hit costs a whole number of units (``ceil(cost)``); one that costs more than ``amount`` can never pass.
    """

    def __init__(self, amount: int, window_s: int, *, name: str, storage: Storage | None = None) -> None:
        if amount < 1 or window_s < 1:
            raise ValueError("amount and window_s must be at least 1")
        self.burst = float(amount)
        self.amount = amount
        self.window_s = window_s
        self._item = RateLimitItemPerSecond(amount, window_s, namespace=f"wb:{name}")
        self._strategy = MovingWindowRateLimiter(storage if storage is not None else memory_storage())

    @classmethod
    def per_rate(cls, rate_per_s: float, burst: int, *, name: str, storage: Storage | None = None) -> WindowLimiter:
        """``burst`` units per ``burst / rate_per_s`` seconds: the same long-run rate as a token bucket."""
        return cls(burst, max(1, round(burst / rate_per_s)), name=name, storage=storage)

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        units = math.ceil(cost)
        if units > self.amount:
            return math.inf
        with shared_store():
            if units <= 0 or self._strategy.hit(self._item, key, cost=units):
                return None
            return self._wait(key, units)

    def peek(self, key: str, cost: float = 1.0) -> float | None:
        units = math.ceil(cost)
        if units > self.amount:
            return math.inf
        with shared_store():
            if units <= 0 or self._strategy.test(self._item, key, cost=units):
                return None
            return self._wait(key, units)

    def state(self, key: str) -> WindowState:
        with shared_store():
            stats = self._strategy.get_window_stats(self._item, key)
        return WindowState(self.amount, max(0, stats.remaining), stats.reset_time)

    def clear(self, key: str) -> None:
        """Forget ``key``'s hits (a success that ends a run of failures)."""
        with shared_store():
            self._strategy.clear(self._item, key)

    def _wait(self, key: str, units: int) -> float:
        stats = self._strategy.get_window_stats(self._item, key)
        # The oldest hit in the window frees its units at reset_time; a cost larger than one hit's needs more to
        # age out, which at an even pace takes the missing share of the window.
        until_oldest = stats.reset_time - time.time()
        missing = max(0, units - stats.remaining)
        return min(float(self.window_s), max(until_oldest, missing * self.window_s / self.amount, 0.001))


class CompositeLimiter:
    """Several limits that must all allow (e.g. a per-minute burst and an hourly quota).

    All or nothing: a hit refused by one limit charges none of them, so refused requests burn no quota.
    """

    def __init__(self, *limiters: RateLimiter) -> None:
        self.burst = min(limiter.burst for limiter in limiters)
        self._limiters = limiters
        # Peek and hit as one step within the process: two hits racing between them could each be charged by
        # some limits and refused by another, so both would lose (fewer allowed than the limits say).
        self._lock = threading.Lock()

    def peek(self, key: str, cost: float = 1.0) -> float | None:
        waits = [w for w in (lim.peek(key, cost) for lim in self._limiters) if w is not None]
        return max(waits) if waits else None

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        with self._lock:
            wait = self.peek(key, cost)
            if wait is not None:
                return wait
            # Across processes (shared Redis) two requests may still pass the peek together; each limit then
            # counts both and may refuse one.
            waits = [w for w in (lim.hit(key, cost) for lim in self._limiters) if w is not None]
            return max(waits) if waits else None

    def state(self, key: str) -> WindowState:
        """The tightest of the limits (the fewest units remaining)."""
        return min((lim.state(key) for lim in self._limiters), key=lambda st: (st.remaining, -st.reset_at))


def quota_limiter(redis_url: str | None, *, name: str, per_minute: int, per_hour: int,
                  storage: Storage | None = None) -> RateLimiter:
    """A burst (per minute) plus an hourly quota, in ``storage`` if given, else in Redis when configured, else
    in process."""
    storage = storage if storage is not None else limit_storage(redis_url)
    return CompositeLimiter(WindowLimiter(per_minute, 60, name=f"{name}:m", storage=storage),
                            WindowLimiter(per_hour, 3600, name=f"{name}:h", storage=storage))


class FailureThrottle:
    """Bounds what failed, unauthenticated requests can make the service do and write.

    Per client: ``burst`` failures per ``burst / rate`` seconds are recorded one audit row each; beyond that a
    request of that client is refused at once (``429``, no lookup, no database write) and only counted. The
    count is written as one aggregated event when the client's budget next allows a failure — so a flood of
    guesses costs one row per window, not one per request, and still leaves its size in the audit log.

    The budget is in ``storage`` (Redis: shared by every process). The suppressed counts are this process's:
    each process writes the count it suppressed with its next recorded failure, so the rows still add up.
    """

    def __init__(self, rate: float, burst: int, *, storage: Storage | None = None, max_keys: int = 100_000) -> None:
        self._limiter = WindowLimiter.per_rate(rate, burst, name="auth-failures", storage=storage)
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def refusal(self, key: str) -> float | None:
        """Before any work for an unauthenticated request: the wait if ``key`` has no failure left (the
        request is counted as suppressed), else ``None``."""
        wait = self._limiter.peek(key)
        if wait is not None:
            self._count(key)
        return wait

    def failure(self, key: str) -> tuple[float | None, int]:
        """Register one failure of ``key``: ``(wait, 0)`` when it must be refused without a record, or
        ``(None, n)`` when it may be recorded, ``n`` failures having been suppressed since the last record."""
        wait = self._limiter.hit(key)
        if wait is not None:
            self._count(key)
            return wait, 0
        with self._lock:
            return None, self._suppressed.pop(key, 0)

    def _count(self, key: str) -> None:
        with self._lock:
            # Bounded: past max_keys distinct clients, new ones are refused without being counted.
            if key in self._suppressed or len(self._suppressed) < self._max_keys:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
