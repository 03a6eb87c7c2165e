"""A clock for the ``limits`` library's storages, so throttle tests move time instead of sleeping.

``limits`` reads ``time.time()`` through its modules' ``time`` name (memory and Redis storages alike); the
fixture points those names, and waybill.ratelimit's, at one controllable clock. Nothing else is replaced:
the real storages and strategies count the hits.
"""

from __future__ import annotations

import time
import types
from collections.abc import Iterator

import limits.storage.memory
import limits.storage.redis
import limits.strategies
import pytest

import waybill.ratelimit


class LimitsClock:
    """Seconds since the epoch, starting now, moved only by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def limits_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[LimitsClock]:
    clock = LimitsClock()
    fake = types.SimpleNamespace(time=clock)
    for module in (limits.storage.memory, limits.storage.redis, limits.strategies, waybill.ratelimit):
        monkeypatch.setattr(module, "time", fake)
    yield clock
