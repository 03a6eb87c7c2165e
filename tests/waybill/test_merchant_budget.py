"""One merchant cannot starve the others: batches are charged per item, and heavy requests are bounded in flight.

Regression tests of issue 11 item 4: a 1,000-item batch cost the same 10 tokens as ten creates, so one merchant
could submit 20,000 shipments a second and others' creates went from 5 to 444 ms. Asserted by structure (what
is charged, what is refused), never by timing.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from tests.conftest import PG_URL, make_merchant, shipment_body
from tests.waybill.test_merchant_api import assert_error, db_count
from waybill import shipments
from waybill.models import Shipment
from waybill.services import build
from waybill.settings import SettingsError, load_settings
from waybill.web.app import create_app
from waybill.web.merchant import batch_cost


def _batch(prefix, n):
    return {"shipments": [shipment_body(f"{prefix}-{i}") for i in range(n)]}


@pytest.fixture
def configured(base_env, session_factory):
    def make(**settings):
        svc = build(dataclasses.replace(base_env.settings, **settings), engine=base_env.engine,
                    session_factory=session_factory)
        return create_app(svc.settings, services_override=svc).test_client(), svc

    return make


def test_batch_cost_is_per_item_with_the_documented_discount():
    assert [batch_cost(n, 0.5) for n in (1, 2, 3, 1000)] == [1, 1, 2, 500]
    assert batch_cost(1000, 1.0) == 1000


def test_a_batch_is_charged_per_item_and_refused_whole(configured):
    # 60 units per 60 s; a batch of 100 costs 1 + 50 = 51, so a second one cannot be covered.
    client, svc = configured(merchant_rate_per_s=1.0, merchant_burst=60, batch_item_cost=0.5)
    m, other = make_merchant(svc, "大卖家"), make_merchant(svc, "小商户")
    first = client.post("/v1/shipments/batch", json=_batch("B1", 100), headers=m.headers)
    assert first.status_code == 200 and {r["status"] for r in first.get_json()["results"]} == {"created"}
    second = client.post("/v1/shipments/batch", json=_batch("B2", 100), headers=m.headers)
    assert_error(second, 429, "rate_limited")
    assert 1 <= int(second.headers["Retry-After"]) <= 60
    assert db_count(svc, Shipment, Shipment.merchant_id == m.id) == 100  # nothing of the second was written
    # What is left (60 - 51 - 1 for the refused request) still buys single creates; then 429.
    codes = [client.post("/v1/shipments", json=shipment_body(f"S-{i}"), headers=m.headers).status_code
             for i in range(9)]
    assert codes == [201] * 8 + [429]
    # Another merchant's budget is its own.
    assert client.post("/v1/shipments", json=shipment_body("O-1"), headers=other.headers).status_code == 201


def test_a_batch_the_budget_can_never_cover_is_a_clear_422(configured):
    client, svc = configured(merchant_rate_per_s=1.0, merchant_burst=20, batch_item_cost=0.5)
    m = make_merchant(svc, "超额商户")
    r = client.post("/v1/shipments/batch", json=_batch("X", 50), headers=m.headers)
    assert_error(r, 422, "validation_error", "shipments")
    assert "38" in r.get_json()["error"]["message"]  # the largest batch this budget takes: 1 + 19 units
    fresh = make_merchant(svc, "满额商户")  # the largest batch exactly fills an unused window
    assert client.post("/v1/shipments/batch", json=_batch("Y", 38), headers=fresh.headers).status_code == 200
    assert db_count(svc, Shipment, Shipment.merchant_id == m.id) == 0


def test_settings_refuse_a_budget_smaller_than_the_largest_batch(tmp_path):
    with pytest.raises(SettingsError, match="WAYBILL_MERCHANT_BURST"):
        load_settings({}, data_dir=str(tmp_path), merchant_burst=100, batch_item_cost=0.5)
    assert load_settings({}, data_dir=str(tmp_path)).merchant_burst >= 1 + batch_cost(1000, 0.5)


def test_a_batch_beyond_the_merchants_in_flight_limit_is_refused_at_once(configured):
    """Two batches in flight hold two slots (taken here as they take them); a third is refused, not queued."""
    client, svc = configured(heavy_concurrency_per_merchant=2)
    m, other = make_merchant(svc, "并发商户"), make_merchant(svc, "旁观商户")
    held = [svc.heavy_requests.try_acquire(f"merchant:{m.id}") for _ in range(2)]
    assert all(held)
    r = client.post("/v1/shipments/batch", json=_batch("H", 2), headers=m.headers)
    assert_error(r, 429, "too_many_concurrent_requests")
    assert r.headers["Retry-After"] == "1"
    assert db_count(svc, Shipment, Shipment.merchant_id == m.id) == 0
    assert client.post("/v1/shipments/batch", json=_batch("O", 2), headers=other.headers).status_code == 200
    assert client.post("/v1/shipments", json=shipment_body("light"), headers=m.headers).status_code == 201
    held[0]()  # one of them ends
    assert client.post("/v1/shipments/batch", json=_batch("H", 2), headers=m.headers).status_code == 200
    assert svc.heavy_requests.in_flight(f"merchant:{m.id}") == 1  # the request gave its slot back


@pytest.mark.skipif(not PG_URL, reason="SQLite runs one transaction at a time (BEGIN IMMEDIATE): requests of a "
                                       "test cannot be in flight together there")
def test_a_third_concurrent_batch_of_one_merchant_is_refused_at_once(fresh_env, monkeypatch):
    env = fresh_env()
    svc = env.services()
    app = create_app(env.settings, services_override=svc)
    heavy, light = make_merchant(svc, "并发商户"), make_merchant(svc, "旁观商户")
    inside = threading.Barrier(3)  # the two in-flight batches and the test
    release = threading.Event()
    real = shipments.create_batch

    def held(session, deps, principal, parsed):
        if principal.id == heavy.id and not release.is_set():  # hold its batches in flight, in the real work
            inside.wait(timeout=30)
            assert release.wait(timeout=30)
        return real(session, deps, principal, parsed)

    monkeypatch.setattr(shipments, "create_batch", held)
    answers: list[int] = []

    def post(prefix):
        answers.append(app.test_client().post("/v1/shipments/batch", json=_batch(prefix, 3),
                                              headers=heavy.headers).status_code)

    threads = [threading.Thread(target=post, args=(f"C{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        inside.wait(timeout=30)  # both are in flight now
        client = app.test_client()
        third = client.post("/v1/shipments/batch", json=_batch("C3", 3), headers=heavy.headers)
        assert_error(third, 429, "too_many_concurrent_requests")
        assert third.headers["Retry-After"] == "1"
        # Other merchants, and the same merchant's light requests, are not held up by it.
        assert client.post("/v1/shipments/batch", json=_batch("L", 3), headers=light.headers).status_code == 200
        assert client.get("/v1/shipments", headers=heavy.headers).status_code == 200
    finally:
        release.set()
        for t in threads:
            t.join(timeout=60)
    assert answers == [200, 200]
    assert svc.heavy_requests.in_flight(f"merchant:{heavy.id}") == 0
    # The slots were given back once the batches ended: the next batch passes.
    r = app.test_client().post("/v1/shipments/batch", json=_batch("C4", 3), headers=heavy.headers)
    assert r.status_code == 200
    assert db_count(svc, Shipment, Shipment.merchant_id == heavy.id) == 9
