"""Pickup codes: sent by SMS when the parcel goes out for delivery, kept as a keyed hash only, 5 wrong codes lock
handover and raise an alert, a dispatcher's resend unlocks, parcels out for delivery before the upgrade get a
code at their next scan, landline recipients get none, and the code never shows in any output."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import delete, select

from courier_api import pickup_codes
from courier_api.models import PickupCode
from tests.conftest import RECIPIENT
from tests.courier_api import pickup_code, sent_codes
from tests.courier_api.last_mile_helpers import assign, database_dump, deliver, printed
from waybill import messages
from waybill.messages.models import SmsMessage
from waybill.models import AuditEvent

LANDLINE = "0755-23456789"


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _events(services: Any, action: str) -> list[AuditEvent]:
    with services.session_factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_handover_with_the_code_from_the_sms_and_the_code_is_nowhere_else(
        client: Any, merchant: Any, services: Any, field_crew: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    shp, qr = printed(client, merchant, field_crew["sorter"])
    bodies = [assign(client, field_crew["dispatcher"], shp["id"])]
    assert bodies[0].status_code == 201
    code = pickup_code(services)
    assert len(code) == 6 and code.isdigit()
    with services.session_factory() as s:
        text = next(m["text"] for m in messages.sent_to(s, services, RECIPIENT["phone"])
                    if m["template"] == "pickup_code")
        row = s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])).one()
    assert shp["waybill_no"][-4:] in text  # the SMS names the parcel by its waybill number's tail
    assert row.sent and row.failures == 0 and len(row.code_hash) == 32
    assert row.code_hash == pickup_codes.code_hash(services.keys.secret("pickup_code"), row.id, code)
    bodies.append(client.post("/v1/courier/scan", json={"token": qr}, headers=field_crew["courier"]))
    assert bodies[-1].status_code == 200
    bodies.append(client.get(f"/v1/shipments/{shp['id']}/label?format=zpl", headers=merchant.headers))
    assert bodies[-1].status_code == 200
    bodies.append(deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=code))
    assert bodies[-1].status_code == 200 and bodies[-1].get_json()["status"] == "delivered"
    # After delivery the code is spent.
    with services.session_factory() as s:
        assert s.scalars(select(PickupCode.superseded_at).where(PickupCode.shipment_id == shp["id"])).one()
    # Nowhere in clear: answers, the label, logs, audit events, any table (the SMS is vault ciphertext).
    for r in bodies:
        assert code not in r.get_data(as_text=True)
    logged = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records], ensure_ascii=False)
    assert code not in logged and RECIPIENT["phone"] not in logged
    assert code not in database_dump(services) and RECIPIENT["phone"] not in database_dump(services)
    assert [e.outcome for e in _events(services, "pickup_code.issue")] == ["ok"]


def test_wrong_codes_count_five_lock_handover_and_raise_an_alert(
        client: Any, merchant: Any, services: Any, field_crew: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="waybill.alerts")
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    code = pickup_code(services)
    answers = [deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=_other(code))
               for _ in range(5)]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 409]
    assert {a.get_json()["error"]["field"] for a in answers} == {"pickup_code"}
    assert answers[-1].get_json()["error"]["code"] == "pickup_locked"
    # Locked: the right code no longer helps, and further tries are not counted.
    right = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=code)
    assert right.status_code == 409 and right.get_json()["error"]["code"] == "pickup_locked"
    with services.session_factory() as s:
        row = s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])).one()
    assert row.failures == 5 and row.locked_at is not None
    outcomes = [e.outcome for e in _events(services, "courier.deliver") if e.object_id == shp["id"]]
    assert outcomes == ["bad_pickup_code"] * 5 + ["pickup_locked"]
    (alert,) = _events(services, "alert.pickup_code_failures")
    assert alert.object_id == shp["id"] and alert.outcome == "alert"
    assert [r for r in caplog.records if r.name == "waybill.alerts" and "pickup" in r.getMessage()]
    assert code not in database_dump(services)


def test_resend_unlocks_and_the_old_code_stops_working(client: Any, merchant: Any, services: Any,
                                                       field_crew: Any) -> None:
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    old = pickup_code(services)
    for _ in range(5):
        deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=_other(old))
    url = f"/v1/dispatch/shipments/{shp['id']}/pickup-code"
    # Other stations, couriers and unknown ids: nothing to see.
    far = client.post(url, headers=field_crew["far_dispatcher"])
    unknown = client.post("/v1/dispatch/shipments/shp_00000000000000000000000000/pickup-code",
                          headers=field_crew["dispatcher"])
    assert far.status_code == unknown.status_code == 404 and far.data == unknown.data
    assert client.post(url, headers=field_crew["courier"]).status_code == 403
    r = client.post(url, headers=field_crew["dispatcher"])
    assert r.status_code == 202 and r.get_json() == {"shipment_id": shp["id"], "sent": True}
    new = pickup_code(services)
    assert new not in r.get_data(as_text=True) and len(sent_codes(services, RECIPIENT["phone"])) == 2
    if new != old:  # one in a million they coincide; the old row is superseded either way
        stale = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=old)
        assert stale.status_code == 422 and stale.get_json()["error"]["field"] == "pickup_code"
    done = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=new)
    assert done.status_code == 200, done.get_json()
    assert [e.outcome for e in _events(services, "pickup_code.resend")] == ["denied", "denied", "ok"]
    # Delivered: nothing left to resend.
    again = client.post(url, headers=field_crew["dispatcher"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_status"


def test_a_reassignment_sends_a_new_code_and_voids_the_old(client: Any, merchant: Any, services: Any,
                                                           field_crew: Any) -> None:
    shp, _ = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    first = pickup_code(services)
    assert assign(client, field_crew["dispatcher"], shp["id"], courier="lm_courier2").status_code == 201
    second = pickup_code(services)
    with services.session_factory() as s:
        rows = s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])
                         .order_by(PickupCode.created_at, PickupCode.id)).all()
    assert len(rows) == 2 and rows[0].superseded_at is not None and rows[1].superseded_at is None
    if first != second:
        r = deliver(client, field_crew["courier2"], shp["id"], method="handover", pickup_code=first)
        assert r.status_code == 422
    assert deliver(client, field_crew["courier2"], shp["id"], method="handover",
                   pickup_code=second).status_code == 200


def test_a_parcel_out_for_delivery_before_the_upgrade_gets_its_code_at_the_next_scan(
        client: Any, merchant: Any, services: Any, field_crew: Any) -> None:
    shp, qr = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    sent_codes(services, RECIPIENT["phone"])  # deliver the assignment's SMS, then forget it ever existed:
    with services.session_factory() as s:  # the state of a parcel assigned before migration 0020
        s.execute(delete(PickupCode).where(PickupCode.shipment_id == shp["id"]))
        s.execute(delete(SmsMessage).where(SmsMessage.shipment_id == shp["id"]))
        s.commit()
    r = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code="123456")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "pickup_code"
    assert sent_codes(services, RECIPIENT["phone"]) == []
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=field_crew["courier"]).status_code == 200
    code = pickup_code(services)
    # A second scan sends nothing more.
    assert client.post("/v1/courier/scan", json={"token": qr}, headers=field_crew["courier"]).status_code == 200
    assert sent_codes(services, RECIPIENT["phone"]) == [code]
    assert [e.outcome for e in _events(services, "pickup_code.issue_on_scan")] == ["ok"]
    assert deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=code).status_code == 200


def test_a_landline_recipient_gets_no_code_and_handover_says_so(client: Any, merchant: Any, services: Any,
                                                                field_crew: Any) -> None:
    recipient = dict(RECIPIENT, phone=LANDLINE)
    shp, _ = printed(client, merchant, field_crew["sorter"], recipient=recipient)
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    with services.session_factory() as s:
        row = s.scalars(select(PickupCode).where(PickupCode.shipment_id == shp["id"])).one()
        assert not row.sent
        assert s.scalars(select(SmsMessage).where(SmsMessage.shipment_id == shp["id"])).all() == []
    for guess in ("000000", "123456"):  # never counted: there is no code to guess
        r = deliver(client, field_crew["courier"], shp["id"], method="handover", pickup_code=guess)
        assert r.status_code == 409 and r.get_json()["error"]["code"] == "pickup_code_unavailable"
    r = client.post(f"/v1/dispatch/shipments/{shp['id']}/pickup-code", headers=field_crew["dispatcher"])
    assert r.status_code == 202 and r.get_json() == {"shipment_id": shp["id"], "sent": False}
    assert [e.outcome for e in _events(services, "pickup_code.issue")] == ["not_sent"]
