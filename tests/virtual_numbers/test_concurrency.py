"""The allocation rule under real concurrency: parallel binds never give one X two live bindings that share
an endpoint, and every binding that was handed out routes to the right party.

Runs on both backends. On PostgreSQL the transactions really overlap and the partial unique index is what
rejects a conflicting allocation; on SQLite writers are serialised by ``BEGIN IMMEDIATE`` (the engine's
write lock), so the same test checks the logic under interleaving rather than truly parallel inserts.
The "index-only" variant picks X numbers blindly, so only the database's partial unique index stands
between the threads and a broken rule; it must reject some inserts and the rule must still hold.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from waybill.models import utcnow
from waybill.virtual_numbers import BuiltinProvider, NoAvailableNumber, add_numbers
from waybill.virtual_numbers.models import VnBinding, VnNumber

THREADS, BINDS_PER_THREAD = 8, 20
PEOPLE = [f"1380000{i:04d}" for i in range(8)]  # a small set, so endpoints overlap all the time
POOL = [f"1700000{i:04d}" for i in range(3)]  # a small pool, so X numbers are contended


class CountingProvider(BuiltinProvider):
    """Counts the inserts the database rejected: evidence that the race really happened."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rejected = 0
        self._count_lock = threading.Lock()

    def insert_binding(self, *args, **kwargs):
        try:
            return super().insert_binding(*args, **kwargs)
        except IntegrityError:
            with self._count_lock:
                self.rejected += 1
            raise


class BlindProvider(CountingProvider):
    """Picks an X without looking at its live endpoints, so the unique index is the only guard left."""

    def _free_number(self, session, mode, ha, hb, tried):
        query = select(VnNumber.x_number).where(VnNumber.enabled.is_(True))
        if tried:
            query = query.where(VnNumber.x_number.not_in(tried))
        return session.scalars(query.order_by(func.random()).limit(1)).first()


@pytest.mark.parametrize("provider_class", [CountingProvider, BlindProvider], ids=["builtin", "index-only"])
def test_parallel_binds_keep_the_allocation_rule(fresh_env, provider_class):
    env = fresh_env()
    svc = env.services()
    provider = provider_class.from_services(svc)
    with svc.session_factory() as s:
        add_numbers(s, POOL)
        s.commit()

    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    granted: list[tuple[str, str, str, str]] = []  # (binding id, x, a, b)
    released: set[str] = set()
    exhausted: list[int] = []
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        rng = random.Random(worker)
        barrier.wait()
        for i in range(BINDS_PER_THREAD):
            a, b = rng.sample(PEOPLE, 2)
            try:
                with svc.session_factory() as s:
                    binding = provider.bind_axb(s, a, b, ttl=timedelta(hours=1), ref=f"w{worker}-{i}")
                    s.commit()
                with lock:
                    granted.append((binding.id, binding.x_number, a, b))
                if rng.random() < 0.8:  # churn: free numbers while others allocate
                    with svc.session_factory() as s:
                        provider.release(s, binding.id)
                        s.commit()
                    with lock:
                        released.add(binding.id)
            except NoAvailableNumber:
                with lock:
                    exhausted.append(worker)
            except BaseException as exc:  # reported by the main thread
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors
    assert len(granted) + len(exhausted) == THREADS * BINDS_PER_THREAD
    assert granted and len(granted) > len(POOL)  # real reuse of numbers happened
    if provider_class is BlindProvider:
        assert provider.rejected > 0  # the database itself turned conflicting allocations away
    print(f"granted={len(granted)} released={len(released)} exhausted={len(exhausted)} "
          f"rejected_by_db={provider.rejected}")

    # From the database: decrypt every live binding and check the rule on the plaintext endpoints.
    now = utcnow()
    by_x: dict[str, list[set[str]]] = defaultdict(list)
    with svc.session_factory() as s:
        live = s.scalars(select(VnBinding).where(VnBinding.active.is_(True), VnBinding.expires_at > now)).all()
        for row in live:
            a = svc.codec.decrypt(row.a_ct, table="vn_bindings", column="a_ct", row_id=row.id)
            b = svc.codec.decrypt(row.b_ct, table="vn_bindings", column="b_ct", row_id=row.id)
            by_x[row.x_number].append({a, b})
    for x, pairs in by_x.items():
        seen: set[str] = set()
        for pair in pairs:
            assert not (seen & pair), f"two live bindings on {x} share an endpoint"
            seen |= pair
    assert {row.id for row in live} == {g[0] for g in granted} - released

    # Every binding still live routes both ways to its own counterpart; released ones never route.
    with svc.session_factory() as s:
        for n, (binding_id, x, a, b) in enumerate(granted):
            to_b = provider.route_call(s, a, x, None, call_id=f"chk-{n}-a", at=now)
            to_a = provider.route_call(s, b, x, None, call_id=f"chk-{n}-b", at=now)
            if binding_id in released:
                assert to_b.binding_id != binding_id and to_a.binding_id != binding_id
            else:
                assert (to_b.routed, to_b.callee, to_b.binding_id) == (True, b, binding_id)
                assert (to_a.routed, to_a.callee, to_a.binding_id) == (True, a, binding_id)
        s.commit()
