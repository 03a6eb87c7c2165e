"""Rate limiting: token buckets keyed by caller, in-process (one set per worker) or shared through Redis."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol


class RateLimiter(Protocol):
    burst: float  # the largest cost one hit may ask for

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        """Consume ``cost`` tokens; return ``None`` if allowed, else seconds until it would be."""
        ...


class TokenBucketLimiter:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

    Buckets live in a bounded LRU so a flood of distinct keys cannot grow memory without limit.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if cost > self.burst:
                self._buckets[key] = (tokens, now)
                return math.inf
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, now)
                allowed = True
            else:
                self._buckets[key] = (tokens, now)
                allowed = False
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return None if allowed else (cost - tokens) / self.rate


# Token buckets in Redis, atomic through one Lua script so every worker process shares them, and one
# round trip however many buckets a key has (a per-minute burst and an hourly quota: two).
# Each bucket is a hash {tokens, ts} that expires after a full refill, so idle keys disappear.
# Every bucket that has the tokens is charged (as CompositeLimiter does); the answer is the longest wait.
_LUA = """
local cost = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local worst = -1
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  if tokens >= cost then
    tokens = tokens - cost
  else
    worst = math.max(worst, (cost - tokens) / rate)
  end
  redis.call('HSET', key, 'tokens', tokens, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return tostring(worst)
"""


class RedisTokenBucketLimiter:
    """Token buckets like :class:`TokenBucketLimiter`, shared by all workers through Redis.

    ``buckets`` are ``(rate, burst, prefix)``; a key must be allowed by all of them.
    """

    def __init__(self, client: Any, buckets: list[tuple[float, float, str]], *,
                 clock: Callable[[], float] = time.time) -> None:
        if not buckets:
            raise ValueError("at least one bucket")
        self.burst = min(burst for _, burst, _ in buckets)
        self._buckets = buckets
        self._args: list[float] = [x for rate, burst, _ in buckets for x in (rate, burst)]
        self._client = client
        self._clock = clock
        self._script = client.register_script(_LUA)

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        if cost > self.burst:
            return math.inf
        raw = self._script(keys=[f"{prefix}:{key}" for _, _, prefix in self._buckets],
                           args=[cost, self._clock(), *self._args])
        wait = float(raw)
        return None if wait < 0 else wait


class CompositeLimiter:
    """Several buckets that must all allow (e.g. a per-minute burst and an hourly quota)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self.burst = min(limiter.burst for limiter in limiters)
        self._limiters = limiters

    def hit(self, key: str, cost: float = 1.0) -> float | None:
        # Check every bucket so each one is charged; report the longest wait.
        waits = [w for w in (lim.hit(key, cost) for lim in self._limiters) if w is not None]
        return max(waits) if waits else None


def quota_limiter(redis_url: str | None, *, name: str, per_minute: float, per_hour: float) -> RateLimiter:
    """A burst (per minute) plus hourly quota, in Redis when configured, in-process otherwise."""
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        return RedisTokenBucketLimiter(client, [(per_minute / 60, per_minute, f"wb:{name}:m"),
                                                (per_hour / 3600, per_hour, f"wb:{name}:h")])
    return CompositeLimiter(TokenBucketLimiter(per_minute / 60, per_minute),
                            TokenBucketLimiter(per_hour / 3600, per_hour))


class FailureThrottle:
    """Bounds what failed, unauthenticated requests can make the service write.

    Per client: the first ``burst`` failures (refilled at ``rate`` per second) are recorded one audit row each;
    beyond that a failure is refused at once (``429``, no database write) and only counted. The count is
    written as one aggregated event when the client's bucket next allows a failure — so a flood of guesses
    costs one row per refill period, not one per request, and still leaves its size in the audit log.
    """

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucketLimiter(rate, burst, max_keys=max_keys, clock=clock)
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def failure(self, key: str) -> tuple[float | None, int]:
        """Register one failure of ``key``: ``(wait, 0)`` when it must be refused without a record, or
        ``(None, n)`` when it may be recorded, ``n`` failures having been suppressed since the last record."""
        wait = self._bucket.hit(key)
        with self._lock:
            if wait is not None:
                if key in self._suppressed or len(self._suppressed) < self._max_keys:
                    self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return wait, 0
            return None, self._suppressed.pop(key, 0)
