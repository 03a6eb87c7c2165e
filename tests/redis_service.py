"""The shared Redis the Redis-backed tests use (``WAYBILL_TEST_REDIS_URL``; ``.ci/run`` starts it) and a skip mark
for when it is not reachable."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("WAYBILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_up() -> bool:
    """Whether the test Redis answers a PING (within a second)."""
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
