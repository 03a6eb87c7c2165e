"""The courier side end to end, and its object-level rules: dispatch, scan, call, deliver, audit."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from courier_api.staff import set_phone
from tests.conftest import RECIPIENT, SENDER, shipment_body
from tests.courier_api import bearer, login, make_partner, make_staff, pickup_code
from tests.printing.label_helpers import decode, pdf_pages_as_images
from waybill.permissions import SYSTEM
from waybill.services import build
from waybill.virtual_numbers import add_numbers
from waybill.web.app import create_app

STATION = "755-W012"  # recipient in 深圳市南山区 -> sorting code 755-W012-03
COURIER_PHONE = "13700001234"
PLAIN = [RECIPIENT["name"], RECIPIENT["phone"], SENDER["name"], SENDER["phone"], SENDER["address"]]


@pytest.fixture
def crew(client, services):
    """A sorter, a dispatcher and two couriers at the recipient's station, one courier elsewhere."""
    with services.session_factory() as s:
        add_numbers(s, ["17000000001", "17000000002", "17000000003"])
        s.commit()
    people = {
        "sorter": make_staff(services, "sorter1", "sorter", STATION),
        "dispatcher": make_staff(services, "disp1", "dispatcher", STATION),
        "courier": make_staff(services, "courier1", "courier", STATION),
        "courier2": make_staff(services, "courier2", "courier", STATION),
        "far_courier": make_staff(services, "courier9", "courier", "010-W001"),
        "far_dispatcher": make_staff(services, "disp9", "dispatcher", "010-W001"),
    }
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "courier1", COURIER_PHONE, services.codec)
        set_phone(s, SYSTEM, "courier2", "13700005678", services.codec)
        s.commit()
    tokens = {}
    for key, new in people.items():
        r = login(client, new)
        assert r.status_code == 200, r.get_json()
        tokens[key] = bearer(r.get_json()["access_token"])
    return tokens


def _printed(client, merchant, crew, order="E-1"):
    shp = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers).get_json()
    r = client.post("/v1/print-jobs", json={"shipment_ids": [shp["id"]], "format": "pdf"}, headers=crew["sorter"])
    assert r.status_code == 200
    (page,) = pdf_pages_as_images(r.data)
    qr = next(text for fmt, text in decode(page) if "QR" in fmt.upper())
    return shp, qr


def _assign(client, crew, shp, courier="courier1", who="dispatcher"):
    return client.post("/v1/dispatch/assignments", json={"shipment_id": shp["id"], "courier": courier},
                       headers=crew[who])


def test_end_to_end_create_print_assign_scan_call_deliver_audit(client, merchant, services, crew):
    shp, qr = _printed(client, merchant, crew)
    # Scanning before dispatch: nothing.
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"]).status_code == 404
    r = _assign(client, crew, shp)
    assert r.status_code == 201 and r.get_json()["status"] == "out_for_delivery"

    view = client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"])
    assert view.status_code == 200
    body = view.get_json()
    assert body["recipient"]["address"] == RECIPIENT["address"]  # full: the courier needs it
    assert body["recipient"]["name"] == "欧***" and body["recipient"]["phone"] == "138******78"
    assert body["shipment_id"] == shp["id"] and body["sorting_code"] == shp["sorting_code"]
    assert RECIPIENT["phone"] not in view.get_data(as_text=True)

    call = client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew["courier"])
    assert call.status_code == 200, call.get_json()
    number = call.get_json()
    assert number["virtual_number"].startswith("170") and number["extension"] and number["expires_at"]
    assert RECIPIENT["phone"] not in call.get_data(as_text=True)
    again = client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew["courier"]).get_json()
    assert again == number  # the live binding, not a new one

    code = pickup_code(services)  # the recipient's SMS
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    for bad in ("0000", wrong_code, RECIPIENT["phone"][-4:]):  # the phone's last digits mean nothing any more
        wrong = client.post(f"/v1/courier/shipments/{shp['id']}/deliver",
                            json={"method": "handover", "pickup_code": bad}, headers=crew["courier"])
        assert wrong.status_code == 422 and wrong.get_json()["error"]["field"] == "pickup_code"
    done = client.post(f"/v1/courier/shipments/{shp['id']}/deliver",
                       json={"method": "handover", "pickup_code": code}, headers=crew["courier"])
    assert done.status_code == 200 and done.get_json()["status"] == "delivered"

    after = client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"])
    unknown = client.post("/v1/courier/scan", json={"token": "A" * 32}, headers=crew["courier"])
    assert after.status_code == unknown.status_code == 404 and after.data == unknown.data
    assert client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew["courier"]).status_code == 404

    auditor = make_staff(services, "auditor1", "auditor")
    token = login(client, auditor).get_json()["access_token"]
    events = client.get("/v1/audit/events?limit=500", headers=bearer(token))
    assert events.status_code == 200
    actions = [e["action"] for e in events.get_json()["items"] if e["object_id"] == shp["id"]]
    for step in ("shipment.create", "label.print", "dispatch.assign", "courier.scan", "courier.call",
                 "courier.deliver"):
        assert step in actions, step
    text = events.get_data(as_text=True)
    for value in PLAIN + [RECIPIENT["address"], COURIER_PHONE]:
        assert value not in text
    verify = client.get("/v1/audit/verify", headers=bearer(token))
    assert verify.status_code == 200 and verify.get_json()["ok"] is True


def test_scan_refusals_all_look_the_same(client, merchant, services, crew):
    shp, qr = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201
    answers = [
        client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier2"]),  # not assigned to them
        client.post("/v1/courier/scan", json={"token": qr}, headers=crew["far_courier"]),  # other station
        client.post("/v1/courier/scan", json={"token": shp["waybill_no"]}, headers=crew["courier"]),  # waybill no
        client.post("/v1/courier/scan", json={"token": qr.lower()}, headers=crew["courier"]),
    ]
    # An expired token (older than the configured lifetime) is refused like any other.
    from sqlalchemy import update

    from waybill.models import QrToken, utcnow

    with services.session_factory() as s:
        s.execute(update(QrToken).where(QrToken.shipment_id == shp["id"])
                  .values(issued_at=utcnow() - timedelta(days=services.settings.qr_token_ttl_days, minutes=1)))
        s.commit()
    answers.append(client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"]))
    with services.session_factory() as s:
        s.execute(update(QrToken).where(QrToken.shipment_id == shp["id"]).values(issued_at=utcnow()))
        s.commit()
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"]).status_code == 200
    # A reprint revokes the scanned token.
    assert client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged"},
                       headers=merchant.headers).status_code == 200
    answers.append(client.post("/v1/courier/scan", json={"token": qr}, headers=crew["courier"]))
    assert {a.status_code for a in answers} == {404}
    assert len({a.data for a in answers}) == 1
    # Roles other than courier never get a courier view.
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=crew["dispatcher"]).status_code == 403
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=merchant.headers).status_code == 403


def test_dispatch_is_limited_to_the_dispatchers_station(client, merchant, crew):
    shp, _ = _printed(client, merchant, crew)
    assert _assign(client, crew, shp, who="far_dispatcher").status_code == 404
    r = _assign(client, crew, shp, courier="courier9")  # a courier of another station
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "courier"
    r = _assign(client, crew, shp, courier="nobody")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "courier"
    unprinted = client.post("/v1/shipments", json=shipment_body("E-2"), headers=merchant.headers).get_json()
    assert _assign(client, crew, unprinted).status_code == 409
    # Reassignment moves the shipment to the new courier.
    assert _assign(client, crew, shp).status_code == 201
    assert _assign(client, crew, shp, courier="courier2").status_code == 201
    assert client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=crew["courier"]).status_code == 404


def test_deliver_methods_and_validation(client, merchant, services, crew):
    locker = make_partner(services, "locker", "丰巢智能柜")
    station = make_partner(services, "station")
    shp, _ = _printed(client, merchant, crew)
    assert _assign(client, crew, shp).status_code == 201
    url = f"/v1/courier/shipments/{shp['id']}/deliver"
    r = client.post(url, json={"method": "drone"}, headers=crew["courier"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "method"
    r = client.post(url, json={"method": "locker"}, headers=crew["courier"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "locker_id"
    r = client.post(url, json={"method": "handover"}, headers=crew["courier"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "pickup_code"
    r = client.post(url, json={"method": "locker", "locker_id": "L-12"}, headers=crew["courier"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "partner_id"
    assert client.post(url, json={"method": "station", "partner_id": station},
                       headers=crew["courier2"]).status_code == 404
    r = client.post(url, json={"method": "locker", "locker_id": "L-12", "partner_id": locker}, headers=crew["courier"])
    assert r.status_code == 200 and r.get_json()["status"] == "delivered"
    assert client.post(url, json={"method": "station", "partner_id": station},
                       headers=crew["courier"]).status_code == 404


def test_scan_quota_answers_429_and_raises_an_alert(base_env, session_factory, merchant, services):
    settings = dataclasses.replace(base_env.settings, scan_per_minute=2, scan_per_hour=100)
    svc = build(settings, engine=base_env.engine, session_factory=session_factory)
    app = create_app(settings, services_override=svc)
    c = app.test_client()
    courier = make_staff(svc, "quota1", "courier", STATION)
    headers = bearer(login(c, courier).get_json()["access_token"])
    codes = [c.post("/v1/courier/scan", json={"token": "B" * 32}, headers=headers).status_code for _ in range(3)]
    assert codes == [404, 404, 429]
    r = c.post("/v1/courier/scan", json={"token": "B" * 32}, headers=headers)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    from sqlalchemy import select

    from waybill.models import AuditEvent

    with svc.session_factory() as s:
        alerts = s.execute(select(AuditEvent).where(AuditEvent.action == "alert.scan_quota")).scalars().all()
        scans = s.execute(select(AuditEvent).where(AuditEvent.action == "courier.scan")).scalars().all()
    assert len(alerts) == 2 and len(scans) == 2 and {e.outcome for e in scans} == {"not_found"}


def test_call_without_a_courier_phone_is_a_conflict(client, merchant, services, crew):
    shp, _ = _printed(client, merchant, crew)
    new = make_staff(services, "nophone", "courier", STATION)
    assert _assign(client, crew, shp, courier="nophone").status_code == 201
    token = login(client, new).get_json()["access_token"]
    r = client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=bearer(token))
    assert r.status_code == 409 and json.loads(r.data)["error"]["field"] == "courier"
