"""Every limit in one store: with WAYBILL_REDIS_URL set, two service registries (two processes, two nodes) count
together; Redis down fails closed (503, Retry-After, nothing written) and the service recovers by itself.

The shared cases run on the test Redis (``WAYBILL_TEST_REDIS_URL``), each with keys of its own (fresh merchant
ids, random client addresses and usernames); the fault case on a private ``redis-server`` the test starts, kills
and starts again. The same across real ``waybill serve`` processes: tests/test_two_nodes.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from limits.storage import MemoryStorage, RedisStorage

from courier_api.staff import set_phone
from tests.conftest import make_merchant, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.last_mile_helpers import STATION, assign, printed
from tests.private_services import PrivateRedis
from tests.redis_service import REDIS_URL, needs_redis
from tests.waybill.test_merchant_api import assert_error, db_count
from waybill.inflight import ConcurrencyLimiter, RedisConcurrencyLimiter
from waybill.models import AuditEvent, Shipment
from waybill.permissions import SYSTEM
from waybill.services import Services, build
from waybill.virtual_numbers import add_numbers
from waybill.waybill_no import new_waybill_no
from waybill.web.app import create_app


def _node(base_env: Any, session_factory: Any, redis_url: str | None, **settings: Any) -> tuple[Any, Services]:
    """One node: its own registry (its own limit store and Redis pool) and app, on the test database."""
    svc = build(dataclasses.replace(base_env.settings, redis_url=redis_url, **settings), engine=base_env.engine,
                session_factory=session_factory)
    return create_app(svc.settings, services_override=svc).test_client(), svc


def _addr() -> dict[str, str]:
    return {"REMOTE_ADDR": f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"}


def test_without_redis_every_limit_is_in_process(base_env, session_factory):
    _, svc = _node(base_env, session_factory, None)
    assert isinstance(svc.limit_storage, MemoryStorage) and isinstance(svc.heavy_requests, ConcurrencyLimiter)


@needs_redis
def test_the_merchant_budget_holds_across_two_nodes_and_answers_say_it(base_env, session_factory):
    a, svc = _node(base_env, session_factory, REDIS_URL, merchant_burst=12, merchant_rate_per_s=0.1,
                   batch_max_items=20)
    b, _ = _node(base_env, session_factory, REDIS_URL, merchant_burst=12, merchant_rate_per_s=0.1,
                 batch_max_items=20)
    assert isinstance(svc.limit_storage, RedisStorage)
    m = make_merchant(svc, "两节点商户")
    answers = [(a if i % 2 else b).post("/v1/shipments", json=shipment_body(f"TN-{i}"), headers=m.headers)
               for i in range(24)]
    assert [r.status_code for r in answers] == [201] * 12 + [429] * 12
    assert db_count(svc, Shipment, Shipment.merchant_id == m.id) == 12
    now = time.time()
    for i, r in enumerate(answers):
        assert r.headers["X-RateLimit-Limit"] == "12"
        assert int(r.headers["X-RateLimit-Remaining"]) == max(0, 11 - i)
        assert now < int(r.headers["X-RateLimit-Reset"]) <= now + 121  # the window is 12 / 0.1 = 120 s
    refused = answers[-1]
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    # A read is charged too, and says so; an unauthenticated answer carries no budget (no merchant known).
    assert a.get("/v1/shipments", headers=m.headers).headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Limit" not in a.get("/v1/shipments").headers


def test_answers_carry_the_budget_without_redis_too(client, merchant):
    r = client.post("/v1/shipments", json=shipment_body("HDR-1"), headers=merchant.headers)
    assert r.status_code == 201
    assert int(r.headers["X-RateLimit-Limit"]) - int(r.headers["X-RateLimit-Remaining"]) >= 1


@needs_redis
def test_heavy_request_slots_are_shared_and_a_dead_holder_frees_them(base_env, session_factory):
    _, one = _node(base_env, session_factory, REDIS_URL, heavy_concurrency_per_merchant=2, heavy_lease_s=1)
    _, two = _node(base_env, session_factory, REDIS_URL, heavy_concurrency_per_merchant=2, heavy_lease_s=1)
    assert isinstance(one.heavy_requests, RedisConcurrencyLimiter)
    key = f"merchant:mch_{secrets.token_hex(6)}"
    first, second = one.heavy_requests.try_acquire(key), two.heavy_requests.try_acquire(key)
    assert first is not None and second is not None
    assert one.heavy_requests.try_acquire(key) is None and two.heavy_requests.try_acquire(key) is None
    first()
    first()  # a second call does nothing
    assert two.heavy_requests.in_flight(key) == 1
    third = two.heavy_requests.try_acquire(key)
    assert third is not None
    # The holders "die" without releasing: their leases expire, and the slots come back.
    time.sleep(1.2)
    assert one.heavy_requests.in_flight(key) == 0
    assert one.heavy_requests.try_acquire(key) is not None


@needs_redis
def test_failure_and_login_throttles_hold_across_two_nodes(base_env, session_factory):
    a, svc = _node(base_env, session_factory, REDIS_URL, auth_failure_burst=3, auth_failure_rate_per_s=0.01)
    b, _ = _node(base_env, session_factory, REDIS_URL, auth_failure_burst=3, auth_failure_rate_per_s=0.01)
    addr = _addr()
    bad = {"Authorization": "Bearer wb_live_" + "x" * 40}
    codes = [(a if i % 2 else b).get("/v1/shipments", headers=bad, environ_base=addr).status_code for i in range(6)]
    assert codes == [401] * 3 + [429] * 3
    # Login: free failures, then backoff, per (username, client), counted on both nodes together.
    a, svc = _node(base_env, session_factory, REDIS_URL, login_free_failures=2)
    b, _ = _node(base_env, session_factory, REDIS_URL, login_free_failures=2)
    user = make_staff(svc, f"tn_{secrets.token_hex(4)}", "auditor")
    addr = _addr()
    wrong = {"username": user.user.username, "password": "not-the-password-1"}
    codes = [(a if i % 2 else b).post("/v1/auth/token", json=wrong, environ_base=addr).status_code for i in range(4)]
    assert codes == [401, 401, 429, 429]  # per process each node would allow its own two


@pytest.fixture
def private_redis(tmp_path: Path):
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def test_redis_down_fails_closed_and_recovers_without_a_restart(base_env, session_factory, private_redis, caplog):
    client, svc = _node(base_env, session_factory, private_redis.url)
    m = make_merchant(svc, "故障商户")
    with svc.session_factory() as s:
        add_numbers(s, ["17000000091"])
        s.commit()
    people = {key: make_staff(svc, f"rd_{key}_{secrets.token_hex(3)}", key, STATION)
              for key in ("sorter", "dispatcher", "courier")}
    with svc.session_factory() as s:
        set_phone(s, SYSTEM, people["courier"].user.username, "13700009191", svc.codec)
        s.commit()
    h = {key: bearer(login(client, new).get_json()["access_token"]) for key, new in people.items()}
    shp, qr = printed(client, m, h["sorter"], "RD-1")
    assert assign(client, h["dispatcher"], shp["id"], people["courier"].user.username).status_code == 201

    private_redis.stop()
    shipments_before, events_before = db_count(svc, Shipment), db_count(svc, AuditEvent)
    t0 = time.monotonic()
    scan = client.post("/v1/courier/scan", json={"token": qr}, headers=h["courier"])
    err = assert_error(scan, 503, "limits_unavailable")
    assert "Redis" in err["message"] and 1 <= int(scan.headers["Retry-After"]) <= 60
    create = client.post("/v1/shipments", json=shipment_body("RD-2"), headers=m.headers)
    assert_error(create, 503, "limits_unavailable")
    assert "Retry-After" in create.headers and "X-RateLimit-Limit" not in create.headers
    assert_error(client.post("/v1/auth/token", json={"username": "x", "password": "y"}), 503, "limits_unavailable")
    assert time.monotonic() - t0 < 10  # fails fast (short timeouts), not after a long retry loop
    assert db_count(svc, Shipment) == shipments_before and db_count(svc, AuditEvent) == events_before
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["redis"]["ok"] is False
    # The log says the store failed, by error type only: never the URL (it may carry a password).
    unavailable = [r for r in caplog.records if r.getMessage() == "limit store unavailable"]
    assert unavailable and all(getattr(r, "error_type", "") == "ConnectionError" for r in unavailable)
    assert f":{private_redis.port}" not in caplog.text

    private_redis.start()  # the same port, an empty Redis: no restart of the service
    scan = client.post("/v1/courier/scan", json={"token": qr}, headers=h["courier"])
    assert scan.status_code == 200, scan.get_json()
    create = client.post("/v1/shipments", json=shipment_body("RD-2"), headers=m.headers)
    assert create.status_code == 201, create.get_json()
    assert db_count(svc, Shipment) == shipments_before + 1
    assert client.get("/readyz").status_code == 200


@needs_redis
def test_subject_challenge_throttle_holds_across_two_nodes(base_env, session_factory):
    a, _ = _node(base_env, session_factory, REDIS_URL, subject_challenges_per_client_per_hour=2)
    b, _ = _node(base_env, session_factory, REDIS_URL, subject_challenges_per_client_per_hour=2)
    addr = _addr()
    codes = [(a if i % 2 else b).post("/v1/subject/challenge", environ_base=addr, json={
        "waybill_no": new_waybill_no(), "phone": f"139{secrets.randbelow(10**8):08d}"}).status_code for i in range(4)]
    assert codes == [202, 202, 429, 429]  # per process each node would allow its own two


def test_the_document_names_the_503_and_the_budget_headers(client):
    doc = client.get("/openapi.json").get_json()
    create = doc["paths"]["/v1/shipments"]["post"]["responses"]
    assert "503" in create and "429" in create
    assert set(create["201"]["headers"]) == set(create["429"]["headers"]) == {
        "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
    assert "503" in doc["paths"]["/v1/auth/token"]["post"]["responses"]  # a public route with a limit
    assert "503" not in doc["paths"]["/v1/privacy-notice"]["get"]["responses"]  # no limit, no Redis needed
