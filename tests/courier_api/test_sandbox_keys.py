"""Test-mode merchant keys (issue 11, item 13): their shipments are flagged, kept apart from live ones, and never
reach a printer or a courier (no QR token is ever issued for them, no dispatch)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.conftest import make_merchant, shipment_body
from tests.courier_api import bearer, login, make_staff
from waybill import merchants
from waybill.models import QrToken, Shipment
from waybill.permissions import SYSTEM

STATION = "755-W012"  # the recipient of shipment_body() is routed here


def _test_key(services, merchant_id):
    with services.session_factory() as s:
        done = merchants.rotate_keys(s, SYSTEM, merchant_id, api_key_secret=services.keys.secret("api_key"),
                                     grace=timedelta(hours=24), mode="test")
        s.commit()
    return bearer(done.api_key)


def test_test_mode_shipments_never_reach_a_printer_or_a_courier(client, services):
    m = make_merchant(services)
    test = _test_key(services, m.id)
    sorter = bearer(login(client, make_staff(services, "sb.sorter", "sorter", STATION)).get_json()["access_token"])
    dispatcher = bearer(login(client, make_staff(services, "sb.disp", "dispatcher", STATION)
                              ).get_json()["access_token"])
    make_staff(services, "sb.courier", "courier", STATION)

    r = client.post("/v1/shipments", json=shipment_body("SB-1"), headers=test)
    assert r.status_code == 201
    sid = r.get_json()["id"]
    with services.session_factory() as s:
        assert s.get(Shipment, sid).test_mode is True

    # The merchant's own label, a sorter's label and print job, a dispatcher's assignment: all refused.
    for url, headers in ((f"/v1/shipments/{sid}/label", test), (f"/v1/shipments/{sid}/label", sorter)):
        r = client.get(url, headers=headers)
        assert r.status_code == 409 and r.get_json()["error"]["code"] == "test_mode", r.get_json()
    r = client.post("/v1/print-jobs", json={"shipment_ids": [sid], "format": "pdf"}, headers=sorter)
    assert r.status_code == 409 and r.get_json()["error"] == {
        "code": "test_mode", "message": r.get_json()["error"]["message"], "field": "shipment_ids[0]"}
    r = client.post("/v1/dispatch/assignments", json={"shipment_id": sid, "courier": "sb.courier"},
                    headers=dispatcher)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "test_mode"
    with services.session_factory() as s:
        assert s.execute(select(QrToken).where(QrToken.shipment_id == sid)).first() is None
        assert s.get(Shipment, sid).status == "created"

    # A live shipment of the same merchant still prints.
    live = client.post("/v1/shipments", json=shipment_body("LIVE-1"), headers=m.headers).get_json()
    assert client.get(f"/v1/shipments/{live['id']}/label", headers=m.headers).status_code == 200


def test_test_and_live_keys_see_only_their_own_mode(client, services):
    m = make_merchant(services)
    test = _test_key(services, m.id)
    t = client.post("/v1/shipments", json=shipment_body("SB-2"), headers=test).get_json()
    live = client.post("/v1/shipments", json=shipment_body("LIVE-2"), headers=m.headers).get_json()
    assert client.get(f"/v1/shipments/{t['id']}", headers=test).status_code == 200
    assert client.get(f"/v1/shipments/{t['id']}", headers=m.headers).status_code == 404
    assert client.get(f"/v1/shipments/{live['id']}", headers=test).status_code == 404
    # A test key can neither print nor cancel a live shipment.
    assert client.get(f"/v1/shipments/{live['id']}/label", headers=test).status_code == 404
    assert client.post(f"/v1/shipments/{live['id']}/cancel", headers=test).status_code == 404
    assert [s["id"] for s in client.get("/v1/shipments", headers=test).get_json()["items"]] == [t["id"]]
    assert [s["id"] for s in client.get("/v1/shipments", headers=m.headers).get_json()["items"]] == [live["id"]]
    # An idempotency key used in one mode is refused in the other, never answered with the other's shipment.
    body = shipment_body("LIVE-3")
    first = client.post("/v1/shipments", json=body, headers=m.headers | {"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    again = client.post("/v1/shipments", json=body, headers=test | {"Idempotency-Key": "k-1"})
    assert again.status_code == 409 and first.get_json()["id"] not in again.get_data(as_text=True)
