"""Races that real traffic produces: the same Idempotency-Key or order id from parallel requests."""

from __future__ import annotations

import threading

from tests.conftest import make_merchant, shipment_body


def _race(env, n, make_request):
    app = env.app()
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(n)

    def work(i):
        client = app.test_client()
        barrier.wait()
        r = make_request(client, i)
        results.append((r.status_code, r.get_json()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_same_idempotency_key_in_parallel_creates_one(fresh_env):
    env = fresh_env()
    m = make_merchant(env.services())
    headers = {**m.headers, "Idempotency-Key": "race-1"}
    results = _race(env, 6, lambda c, i: c.post("/v1/shipments", json=shipment_body("R-1"), headers=headers))
    assert {s for s, _ in results} == {201}, results
    assert len({body["id"] for _, body in results}) == 1
    listed = env.app().test_client().get("/v1/shipments", headers=m.headers).get_json()["items"]
    assert len(listed) == 1


def test_same_order_id_in_parallel_creates_one(fresh_env):
    env = fresh_env()
    m = make_merchant(env.services())
    results = _race(env, 6, lambda c, i: c.post("/v1/shipments", json=shipment_body("R-2"), headers=m.headers))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409}, results
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] in ("duplicate_merchant_order_id", "conflict")


def test_waybill_number_collision_is_retried_not_reported_as_duplicate(client, merchant, monkeypatch):
    import waybill.shipment_rows as shipments_mod  # where new rows draw their numbers
    from waybill.waybill_no import new_waybill_no

    first = client.post("/v1/shipments", json=shipment_body("WB-1"), headers=merchant.headers).get_json()
    drawn = iter([first["waybill_no"], first["waybill_no"]])
    monkeypatch.setattr(shipments_mod, "new_waybill_no", lambda: next(drawn, None) or new_waybill_no())
    r = client.post("/v1/shipments", json=shipment_body("WB-2"), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["waybill_no"] != first["waybill_no"]
    batch = client.post("/v1/shipments/batch", headers=merchant.headers,
                        json={"shipments": [shipment_body("WB-3"), shipment_body("WB-4")]}).get_json()["results"]
    assert [x["status"] for x in batch] == ["created", "created"]
