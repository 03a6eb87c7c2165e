"""Red-team probes of issue 13 (pickup codes, partners, movement, webhooks): each test is an attack or a contract
clause read word by word; a failure here is a defect."""

from __future__ import annotations

from typing import Any

import pytest

from tests.courier_api import make_partner, pickup_code
from tests.courier_api.last_mile_helpers import assign, deliver, printed
from waybill.webhooks import guard


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize("address", ["fec0::1", "feff:ffff::1"])
def test_ssrf_guard_refuses_ipv6_site_local(address: str) -> None:
    """fec0::/10 (site-local, RFC 3879) is a private range some networks still route internally."""
    with pytest.raises(guard.BlockedAddress):
        guard.resolve("https://hooks.example.com/x", allow_private=False, resolver=lambda host, port: [address])


def test_ssrf_guard_refuses_a_name_with_one_private_answer_among_public_ones() -> None:
    with pytest.raises(guard.BlockedAddress):
        guard.resolve("https://hooks.example.com/x", allow_private=False,
                      resolver=lambda host, port: ["93.184.216.34", "10.0.0.5"])


def test_malformed_pickup_code_on_a_locked_parcel_still_answers_pickup_locked(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    """Locked is locked: whatever the courier types, the answer is 409 pickup_locked (not a format 422)."""
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    code = pickup_code(services)
    for _ in range(5):
        deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=_other(code))
    r = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code="12345")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "pickup_locked", r.get_json()


def test_reassignment_does_not_lift_a_pickup_code_lock(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    """Contract: after 5 wrong codes handover is locked for the shipment; a dispatcher's resend unlocks. A
    reassignment (to the same courier even) must not hand out 5 more guesses without the resend."""
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    code = pickup_code(services)
    for _ in range(5):
        deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=_other(code))
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    fresh = pickup_code(services)
    r = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=_other(fresh))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "pickup_locked", r.get_json()


def test_station_delivery_with_a_locker_partner_or_authority_is_refused(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    for kind in ("locker", "authority"):
        partner = make_partner(services, kind=kind, name=f"合作方{kind}")
        r = deliver(client, field_crew["courier"], shp["id"], method="station", partner_id=partner)
        assert r.status_code == 422 and r.get_json()["error"]["field"] == "partner_id"


@pytest.mark.parametrize("body", [
    {"waybill_nos": ["x"] * 1001, "event": "arrival"},
    {"waybill_nos": [1, 2], "event": "arrival"},
    {"waybill_nos": "SF1", "event": "arrival"},
    {"waybill_nos": ["\x00", "\ud7ff", "运单号", "A" * 64], "event": "departure"},
    {"waybill_nos": [], "event": "arrival"},
    {"waybill_nos": ["SF1"], "event": "ARRIVAL"},
    {"waybill_nos": ["SF1"]},
    [1, 2, 3],
])
def test_sorting_scan_bad_input_is_a_4xx_naming_the_field(client: Any, field_crew: Any, body: Any) -> None:
    r = client.post("/v1/sorting/scans", json=body, headers=field_crew["sorter"])
    assert r.status_code in (200, 400, 422), r.get_data(as_text=True)
    if r.status_code != 200:
        assert r.get_json()["error"]["code"]


def test_sorting_scan_malformed_json(client: Any, field_crew: Any) -> None:
    r = client.post("/v1/sorting/scans", data=b'{"waybill_nos": [', headers={
        **field_crew["sorter"], "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.get_json()["error"]["code"]


@pytest.mark.parametrize("code", ["１２３４５６", "12345６", " 123456", "123456\n", "٠١٢٣٤٥"])
def test_odd_pickup_codes_are_a_422_and_not_counted(
        client: Any, merchant: Any, services: Any, field_crew: Any, code: str) -> None:
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    r = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=code)
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "pickup_code", r.get_json()


def _test_key_headers(services: Any, merchant: Any) -> dict[str, str]:
    from waybill.merchants import issue_api_key

    with services.session_factory() as s:
        raw = issue_api_key(s, merchant.id, api_key_secret=services.keys.secret("api_key"), mode="test")
        s.commit()
    return {"Authorization": f"Bearer {raw}"}


def test_a_test_mode_key_cannot_take_over_the_live_webhook_endpoints(client: Any, merchant: Any,
                                                                     services: Any) -> None:
    """A test key sees only test shipments (README); it must not read the secret of, or remove, the endpoints the
    live key set up: a rotation through it hands its holder the production signing secret (forged webhooks)."""
    made = client.post("/v1/webhooks", json={"url": "https://93.184.215.14/hooks", "events": [
        "shipment.status_changed"]}, headers=merchant.headers)
    assert made.status_code == 201, made.get_json()
    hook = made.get_json()["id"]
    test = _test_key_headers(services, merchant)
    answers = [client.post(f"/v1/webhooks/{hook}/rotate-secret", headers=test),
               client.delete(f"/v1/webhooks/{hook}", headers=test), client.get("/v1/webhooks", headers=test),
               client.get(f"/v1/webhooks/{hook}/deliveries", headers=test),
               client.post("/v1/webhooks", json={"url": "https://93.184.215.14/t", "events": [
                   "shipment.status_changed"]}, headers=test)]
    assert [a.status_code for a in answers] == [403] * 5
    assert all("whsec_" not in a.get_data(as_text=True) for a in answers)
    # The live endpoint is untouched.
    (item,) = client.get("/v1/webhooks", headers=merchant.headers).get_json()["items"]
    assert item["id"] == hook and item["status"] == "active"


def test_status_edges_hold_over_http(client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    """Cancel after in_transit, attempt and reassignment after delivery, reprint of a delivered parcel, resend for
    a delivered one, a second delivery: all refused, and the tracking history has no gap or duplicate."""
    shp, _ = printed(client, merchant, field_crew["sorter"], order="RT-EDGE")
    r = client.post("/v1/sorting/scans", json={"waybill_nos": [shp["waybill_no"]], "event": "arrival"},
                    headers=field_crew["sorter"])
    assert r.get_json()["results"][0]["status"] == "in_transit"
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 409
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    assert deliver(client, field_crew["courier"], shp["id"], method="handover",
                   pickup_code=pickup_code(services)).status_code == 200
    after = [
        client.post(f"/v1/courier/shipments/{shp['id']}/attempt", json={"reason": "not_home"},
                    headers=field_crew["courier"]).status_code,
        assign(client, field_crew["dispatcher"], shp["id"]).status_code,
        client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged"},
                    headers=field_crew["sorter"]).status_code,
        client.post(f"/v1/dispatch/shipments/{shp['id']}/pickup-code", headers=field_crew["dispatcher"]).status_code,
        deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code="000000").status_code,
        client.post("/v1/sorting/scans", json={"waybill_nos": [shp["waybill_no"]], "event": "arrival"},
                    headers=field_crew["sorter"]).get_json()["results"][0]["error"]["code"],
    ]
    assert after == [404, 409, 409, 409, 404, "invalid_status"]
    events = client.get(f"/v1/shipments/{shp['id']}/events", headers=merchant.headers).get_json()["items"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["status"] for e in events if e["kind"] == "status"] == [
        "created", "printed", "in_transit", "out_for_delivery", "delivered"]


def test_a_far_dispatcher_cannot_tell_another_stations_parcel_from_none(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    shp, _ = printed(client, merchant, field_crew["sorter"], order="RT-FAR")
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    far = field_crew["far_dispatcher"]
    mine = client.post(f"/v1/dispatch/shipments/{shp['id']}/pickup-code", headers=far)
    none = client.post("/v1/dispatch/shipments/shp_00000000000000000000000000/pickup-code", headers=far)
    assert mine.status_code == none.status_code == 404
    assert mine.get_json() == none.get_json()

