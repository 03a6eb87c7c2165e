"""Rate limiting: token buckets keyed by caller (in-process; one bucket set per worker)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
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
