"""Red-team finding, fixed: the subject challenge throttle's peek-then-hit lets concurrent requests past its limits."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from courier_api.subjects.service import SubjectServices
from waybill.errors import RateLimited
from waybill.ratelimit import WindowLimiter, memory_storage


def test_concurrent_challenges_exceed_the_per_phone_limit(monkeypatch):
    storage = memory_storage()  # Redis behaves the same: each call is atomic, the pair is not
    sub = SubjectServices(base=None, verify=SimpleNamespace(code_key=b"k" * 32),
                          per_phone=WindowLimiter(5, 3600, name="p", storage=storage),
                          per_waybill=WindowLimiter(10, 3600, name="w", storage=storage),
                          per_client=WindowLimiter(1000, 3600, name="c", storage=storage))
    n = 12
    barrier = threading.Barrier(n)
    real_peek = WindowLimiter.peek

    def peek(self, key, cost=1.0):  # the requests of n nodes/threads reach the peeks together
        wait = real_peek(self, key, cost)
        if self is sub.per_waybill:  # the last peek
            barrier.wait(timeout=5)
        return wait

    monkeypatch.setattr(WindowLimiter, "peek", peek)
    passed = []

    def one(i):
        try:
            sub.throttle("SF0000000001", "13800138000", f"10.0.0.{i}")
            passed.append(i)
        except RateLimited:
            pass

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) <= 5, f"{len(passed)} challenges to one phone passed a limit of 5 per hour"
