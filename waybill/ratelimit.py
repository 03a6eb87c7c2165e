"""Rate limits on the ``limits`` library: moving windows keyed by caller, in-process or shared through Redis.

Every throttle of the service is a :class:`WindowLimiter` (or several of them, :class:`CompositeLimiter`):
at most ``amount`` units per ``window_s`` seconds and key, counted exactly over the last ``window_s`` seconds
(``limits``' moving-window strategy). The storage is ``limits``' in-process ``MemoryStorage`` (one set of
counters per worker process) unless a Redis URL is given; the scale issue moves the rest to Redis.

:class:`ConcurrencyLimiter` is the one thing here that is not a rate: how many heavy requests a caller may
have in flight at once (per process).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter


class RateLimiter(Protocol):
    burst: float  # the largest cost one hit may ask for

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        """Consume ``cost`` units; return ``None`` if allowed, else seconds until it would be."""
        ...

    def peek(self, key: str, cost: float = 1.0) -> float | None:
        """Like :meth:`hit` without consuming anything."""
        ...


def memory_storage() -> Storage:
    """A fresh in-process storage (counters of one worker process)."""
    return MemoryStorage()


def redis_storage(redis_url: str) -> Storage:
    """``limits``' Redis storage: every process using the same URL shares the counters."""
    storage = storage_from_string(redis_url, socket_timeout=2)
    assert isinstance(storage, Storage)  # a redis:// URL names the synchronous storage
    return storage


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
        if units <= 0 or self._strategy.hit(self._item, key, cost=units):
            return None
        return self._wait(key, units)

    def peek(self, key: str, cost: float = 1.0) -> float | None:
        units = math.ceil(cost)
        if units > self.amount:
            return math.inf
        if units <= 0 or self._strategy.test(self._item, key, cost=units):
            return None
        return self._wait(key, units)

    def clear(self, key: str) -> None:
        """Forget ``key``'s hits (a success that ends a run of failures)."""
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


def quota_limiter(redis_url: str | None, *, name: str, per_minute: int, per_hour: int) -> RateLimiter:
    """A burst (per minute) plus an hourly quota, in Redis when configured, in-process otherwise."""
    storage = redis_storage(redis_url) if redis_url else memory_storage()
    return CompositeLimiter(WindowLimiter(per_minute, 60, name=f"{name}:m", storage=storage),
                            WindowLimiter(per_hour, 3600, name=f"{name}:h", storage=storage))


class FailureThrottle:
    """Bounds what failed, unauthenticated requests can make the service do and write.

    Per client: ``burst`` failures per ``burst / rate`` seconds are recorded one audit row each; beyond that a
    request of that client is refused at once (``429``, no lookup, no database write) and only counted. The
    count is written as one aggregated event when the client's budget next allows a failure — so a flood of
    guesses costs one row per window, not one per request, and still leaves its size in the audit log.
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


class ConcurrencyLimiter:
    """At most ``limit`` requests in flight per key, in this process (a counter per key, not a rate).

    :meth:`try_acquire` answers at once — a caller over the limit is refused, never queued — with a release
    function to call exactly once (later calls do nothing).
    """

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
