"""Scan quotas shared through Redis, call-back grace after delivery, and the auditors' endpoints."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from courier_api.deps import delivery_deps
from tests.conftest import RECIPIENT
from tests.courier_api import bearer, login, make_partner, make_staff
from tests.courier_api.test_delivery_flow import _assign, _printed, crew  # noqa: F401 - fixture
from tests.limits_clock import limits_clock  # noqa: F401 - fixture
from tests.redis_service import REDIS_URL, redis_up
from waybill.models import utcnow
from waybill.ratelimit import CompositeLimiter, WindowLimiter, memory_storage, quota_limiter, redis_storage


@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_quota_is_shared_between_workers_through_redis():
    name = "test-" + secrets.token_hex(4)
    # Two limiters = two worker processes; they must see one bucket per courier.
    worker_a = quota_limiter(REDIS_URL, name=name, per_minute=3, per_hour=100)
    worker_b = quota_limiter(REDIS_URL, name=name, per_minute=3, per_hour=100)
    assert worker_a.hit("usr_1") is None
    assert worker_b.hit("usr_1") is None
    assert worker_a.hit("usr_1") is None
    wait = worker_b.hit("usr_1")
    assert wait is not None and 0 < wait <= 60  # the first of the three leaves the minute's window
    assert worker_a.hit("usr_2") is None  # another courier has their own bucket


@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_hourly_quota_applies_after_the_burst():
    name = "test-" + secrets.token_hex(4)
    limiter = quota_limiter(REDIS_URL, name=name, per_minute=1000, per_hour=5)
    assert [limiter.hit("usr_1") is None for _ in range(6)] == [True] * 5 + [False]


@pytest.mark.skipif(not redis_up(), reason="Redis is not reachable (.ci/run starts it)")
def test_redis_windows_answer_like_the_in_process_ones(limits_clock):  # noqa: F811
    """The same limits on ``limits``' Redis storage and on its in-process storage must agree, step by step,
    under the same clock (same answers, same waits, nothing charged by a refused hit)."""
    import random

    rng = random.Random(7)
    name = "test-" + secrets.token_hex(4)

    def pair(storage):
        return CompositeLimiter(WindowLimiter(5, 60, name=f"{name}:m", storage=storage),
                                WindowLimiter(8, 3600, name=f"{name}:h", storage=storage))

    shared, local = pair(redis_storage(REDIS_URL)), pair(memory_storage())
    answers = []
    for _ in range(60):
        limits_clock.advance(rng.choice([0.0, 1.0, 7.5, 30.0, 400.0]))
        cost = rng.choice([1, 1, 2])
        a, b = shared.hit("usr_9", cost), local.hit("usr_9", cost)
        assert (a is None) == (b is None) and (a is None or a == pytest.approx(b, abs=0.01)), (a, b)
        answers.append(a is None)
    assert True in answers and False in answers  # the walk met both answers


def test_in_process_quota_without_redis():
    limiter = quota_limiter(None, name="x", per_minute=2, per_hour=100)
    assert [limiter.hit("c") is None for _ in range(3)] == [True, True, False]


def test_recipient_can_call_back_during_the_grace_period_only(client, merchant, services, crew):  # noqa: F811
    shp, _ = _printed(client, merchant, crew, "G-1")
    assert _assign(client, crew, shp).status_code == 201
    number = client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew["courier"]).get_json()
    station = make_partner(services, "station")
    done = client.post(f"/v1/courier/shipments/{shp['id']}/deliver", json={"method": "station", "partner_id": station},
                       headers=crew["courier"])
    assert done.status_code == 200
    provider = delivery_deps(services).provider
    grace = timedelta(hours=services.settings.release_grace_hours)
    with services.session_factory() as s:
        during = provider.route_call(s, RECIPIENT["phone"], number["virtual_number"], None, call_id="c1",
                                     at=utcnow() + grace - timedelta(minutes=5))
        after = provider.route_call(s, RECIPIENT["phone"], number["virtual_number"], None, call_id="c2",
                                    at=utcnow() + grace + timedelta(minutes=5))
        stranger = provider.route_call(s, "13900009999", number["virtual_number"], number["extension"],
                                       call_id="c3", at=utcnow())
        s.commit()
    assert during.routed and during.callee == "13700001234"  # back to the courier
    assert not after.routed and after.reason == "out_of_session"
    assert not stranger.routed


def test_audit_events_filters_and_cursor(client, merchant, services):
    for i in range(5):
        client.post("/v1/shipments", json={"bad": i}, headers=merchant.headers)
    from tests.conftest import shipment_body

    ids = [client.post("/v1/shipments", json=shipment_body(f"AU-{i}"), headers=merchant.headers).get_json()["id"]
           for i in range(5)]
    auditor = make_staff(services, "auditor7", "auditor")
    headers = bearer(login(client, auditor).get_json()["access_token"])
    seen, cursor = [], None
    while True:
        url = "/v1/audit/events?limit=2&action=shipment.create" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=headers).get_json()
        seen += [e["object_id"] for e in page["items"]]
        assert all(e["action"] == "shipment.create" for e in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == seen[-5:] and len(seen) == len(set(seen))
    # Each item names its chain and its place there: one shipment's events are one chain, places 1, 2, 3...
    every = client.get("/v1/audit/events?limit=500", headers=headers).get_json()["items"]
    from waybill.audit.chain import shard_of

    for e in every:
        assert e["shard"] == shard_of(e["object_id"], e["actor"], services.settings.audit_shards)
    by_shard: dict[int, list[int]] = {}
    for e in every:
        by_shard.setdefault(e["shard"], []).append(e["shard_seq"])
    assert all(places == list(range(1, len(places) + 1)) for places in by_shard.values())
    assert [e["seq"] for e in every] == sorted(e["seq"] for e in every)
    mine = client.get(f"/v1/audit/events?limit=500&actor=merchant:{merchant.id}", headers=headers).get_json()
    assert mine["items"] and all(e["actor"] == f"merchant:{merchant.id}" for e in mine["items"])
    for bad in ("limit=0", "limit=abc", "cursor=-1", "sort=asc"):
        r = client.get(f"/v1/audit/events?{bad}", headers=headers)
        assert r.status_code == 422, bad
    # Only auditors read the log (separation of duties): not admins, not privacy officers, not merchants.
    admin = make_staff(services, "admin7", "admin")
    admin_headers = bearer(login(client, admin).get_json()["access_token"])
    assert client.get("/v1/audit/events", headers=admin_headers).status_code == 403
    assert client.get("/v1/audit/verify", headers=merchant.headers).status_code == 403
