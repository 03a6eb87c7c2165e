"""Canaries (issue 14 part 3): shipments planted at a station that look like any other, whose opening gives an
insider away (alert ``canary``, critical: the account is suspended), and to whose numbers nothing is ever sent."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import run, shipment_body
from tests.courier_api import sent_codes
from tests.courier_api.last_mile_helpers import STATION, assign, printed
from tests.courier_api.test_privacy_requests import _filed_and_approved
from tests.printing.label_helpers import decode, pdf_pages_as_images
from waybill import messages
from waybill.alerts.models import AccountSuspension, Alert
from waybill.canaries import plant
from waybill.canaries.models import Canary
from waybill.corrections import current_party
from waybill.messages.models import SmsMessage
from waybill.models import Base, Merchant, OutboxMessage, Shipment
from waybill.phones import is_canary_number, normalize_phone


def _plant(services, count: int = 1, station: str = STATION) -> list[str]:
    with services.session_factory() as s:
        planted = plant.plant(s, services.shipment_deps, services.label_deps, station=station, count=count,
                              api_key_secret=services.keys.secret("api_key"))
        s.commit()
    return planted.shipment_ids


def _parties(services, shipment_id: str) -> dict[str, dict[str, str]]:
    with services.session_factory() as s:
        shipment = s.get(Shipment, shipment_id)
        assert shipment is not None
        return {p: current_party(services.codec, shipment, p) for p in ("sender", "recipient")}


def _qr(client, sorter, shipment_id: str) -> str:
    r = client.post("/v1/print-jobs", json={"shipment_ids": [shipment_id], "format": "pdf"}, headers=sorter)
    assert r.status_code == 200, r.get_json()
    (page,) = pdf_pages_as_images(r.data)
    return next(text for fmt, text in decode(page) if "QR" in fmt.upper())


def shape(value: Any) -> Any:
    """Keys and value types, recursively (what a client could tell two answers apart by, values aside)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def _secrets(parties: dict[str, dict[str, str]]) -> list[str]:
    return [p[f] for p in parties.values() for f in ("name", "phone", "address")]


def _alerts(services, actor: str) -> list[Alert]:
    with services.session_factory() as s:
        return list(s.scalars(select(Alert).where(Alert.rule == "canary", Alert.actor == actor)))


def _suspended(services, actor: str) -> bool:
    with services.session_factory() as s:
        return s.scalar(select(AccountSuspension.id).where(AccountSuspension.actor == actor,
                                                            AccountSuspension.lifted_at.is_(None))) is not None


def _dump(services, *tables: type[Base]) -> str:
    parts = []
    with services.session_factory() as s:
        for model in tables:
            for row in s.execute(select(model.__table__)):  # type: ignore[attr-defined]
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_planted_canaries_look_like_printed_shipments_of_the_station(services):
    ids = _plant(services, count=3)
    assert len(ids) == 3
    with services.session_factory() as s:
        rows = [s.get(Shipment, sid) for sid in ids]
        merchants = {r.merchant_id for r in rows if r is not None}
        assert len(merchants) == 1
        merchant = s.get(Merchant, merchants.pop())
        assert merchant is not None and "canary" not in merchant.name.lower() and not merchant.disabled
        for row in rows:
            assert row is not None and row.status == "printed" and row.printed_at is not None
            assert row.destination_station == STATION and row.sorting_code.startswith(STATION + "-")
            assert not row.test_mode
        assert set(s.scalars(select(Canary.shipment_id))) == set(ids)
    for sid in ids:
        for party in _parties(services, sid).values():
            assert is_canary_number(party["phone"])
            assert normalize_phone(party["phone"]).kind == "mobile"  # passes the service's own validation
            assert 2 <= len(party["name"]) <= 3 and "号" in party["address"]
    # A second planting reuses the internal merchant.
    (more,) = _plant(services)
    with services.session_factory() as s:
        again = s.get(Shipment, more)
        assert again is not None and again.merchant_id == rows[0].merchant_id  # type: ignore[union-attr]


@pytest.mark.parametrize(("station", "count", "field"), [("755-Z999", 1, "station"), ("nonsense", 1, "station"),
                                                         (STATION, 0, "count"), (STATION, 101, "count")])
def test_planting_refuses_bad_input_and_writes_nothing(services, station, count, field):
    from waybill.errors import ValidationFailed

    with services.session_factory() as s, pytest.raises(ValidationFailed) as caught:
        plant.plant(s, services.shipment_deps, services.label_deps, station=station, count=count,
                    api_key_secret=services.keys.secret("api_key"))
    assert caught.value.field == field
    with services.session_factory() as s:
        assert s.scalars(select(Canary)).first() is None


def test_the_cli_plants_canaries_and_prints_their_ids(cli_env):
    out = json.loads(run(["canary", "create", "--station", STATION, "--count", "2"], cli_env).stdout)
    assert out["created"] == 2 and len(out["shipment_ids"]) == 2
    assert all(sid.startswith("shp_") for sid in out["shipment_ids"])
    bad = run(["canary", "create", "--station", STATION, "--count", "x"], cli_env, check=False)
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["field"] == "count"


def test_a_browsing_courier_who_scans_a_canary_is_alerted_on_and_suspended(client, services, merchant, field_crew,
                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    (canary,) = _plant(services)
    parties = _parties(services, canary)
    real, real_qr = printed(client, merchant, field_crew["sorter"])
    canary_qr = _qr(client, field_crew["sorter"], canary)
    assert shape(assign(client, field_crew["dispatcher"], canary).get_json()) == shape(
        assign(client, field_crew["dispatcher"], real["id"], courier="lm_courier2").get_json())

    # The pickup code went to the real recipient; to the canary's number nothing was sent, and no task exists.
    assert sent_codes(services, "13812345678")
    assert sent_codes(services, parties["recipient"]["phone"]) == []
    with services.session_factory() as s:
        rows = list(s.scalars(select(SmsMessage).where(SmsMessage.shipment_id == canary)))
        assert [r.status for r in rows] == ["suppressed"]
        assert rows[0].phone_ct is None and rows[0].text_ct is None
        payloads = [json.loads(p) if isinstance(p, str) else p for p in s.scalars(select(OutboxMessage.payload))]
        assert all(p.get("message_id") != rows[0].id for p in payloads)

    r = client.post("/v1/courier/scan", json={"token": canary_qr}, headers=field_crew["courier"])
    assert r.status_code == 200, r.get_json()  # the insider is not warned by the answer
    r_real = client.post("/v1/courier/scan", json={"token": real_qr}, headers=field_crew["courier2"])
    assert shape(r.get_json()) == shape(r_real.get_json())

    actor = _actor(services, "lm_courier")
    (alert,) = _alerts(services, actor)
    assert alert.severity == "critical" and alert.object_id == canary and alert.status == "open"
    assert _suspended(services, actor)
    assert client.get("/v1/partners", headers=field_crew["courier"]).status_code == 401  # the next request
    assert not _alerts(services, _actor(services, "lm_courier2"))  # the real shipment's courier: nothing

    found = _dump(services, Alert, AccountSuspension) + "\n" + caplog.text
    for secret in _secrets(parties):
        assert secret not in found


def _actor(services, username: str) -> str:
    from courier_api.models import StaffUser

    with services.session_factory() as s:
        return "staff:" + s.scalars(select(StaffUser.id).where(StaffUser.username == username)).one()


def test_a_courier_calling_a_canary_recipient_is_alerted_on_and_suspended(client, services, merchant, field_crew):
    (canary,) = _plant(services)
    real, _qr_real = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], canary, courier="lm_courier2").status_code == 201
    assert assign(client, field_crew["dispatcher"], real["id"]).status_code == 201
    r_real = client.post(f"/v1/courier/shipments/{real['id']}/call", headers=field_crew["courier"])
    r = client.post(f"/v1/courier/shipments/{canary}/call", headers=field_crew["courier2"])
    assert r.status_code == 200 and r_real.status_code == 200, (r.get_json(), r_real.get_json())
    assert shape(r.get_json()) == shape(r_real.get_json())
    actor = _actor(services, "lm_courier2")
    (alert,) = _alerts(services, actor)
    assert alert.severity == "critical" and _suspended(services, actor)
    assert not _alerts(services, _actor(services, "lm_courier"))
    assert client.post(f"/v1/courier/shipments/{canary}/call", headers=field_crew["courier2"]).status_code == 401


def test_a_privacy_officer_reading_a_canary_is_alerted_on_and_suspended(client, services, merchant, officers, caplog):
    caplog.set_level(logging.DEBUG)
    (canary,) = _plant(services)
    parties = _parties(services, canary)
    r = client.post("/v1/shipments", json=shipment_body("CAN-REAL-1"), headers=merchant.headers)
    real = r.get_json()["id"]
    real_req = _filed_and_approved(client, officers, real)
    canary_req = _filed_and_approved(client, officers, canary)
    assert shape(real_req) == shape(canary_req)
    read_real = client.get(f"/v1/privacy/requests/{real_req['id']}/personal-data", headers=officers["officer"])
    assert read_real.status_code == 200
    officer = _actor(services, "po_one")
    assert not _alerts(services, officer)
    read = client.get(f"/v1/privacy/requests/{canary_req['id']}/personal-data", headers=officers["officer"])
    assert read.status_code == 200, read.get_json()
    assert shape(read.get_json()) == shape(read_real.get_json())
    (alert,) = _alerts(services, officer)
    assert alert.severity == "critical" and alert.object_type == "shipment" and alert.object_id == canary
    assert _suspended(services, officer)
    again = client.get(f"/v1/privacy/requests/{real_req['id']}/personal-data", headers=officers["officer"])
    assert again.status_code == 401
    # Filing and approving a request opened nothing: the approving officer is not suspended.
    assert not _alerts(services, _actor(services, "po_two"))
    found = _dump(services, Alert, AccountSuspension) + "\n" + caplog.text
    for secret in _secrets(parties):
        assert secret not in found


def test_a_subject_challenge_with_a_canary_number_sends_nothing_answers_as_usual_and_raises_canary(client, services):
    (canary,) = _plant(services)
    parties = _parties(services, canary)
    with services.session_factory() as s:
        shipment = s.get(Shipment, canary)
        assert shipment is not None
        waybill_no = shipment.waybill_no
    r = client.post("/v1/subject/challenge", json={"waybill_no": waybill_no, "phone": parties["recipient"]["phone"]})
    miss = client.post("/v1/subject/challenge", json={"waybill_no": waybill_no, "phone": "13900001111"})
    assert r.status_code == miss.status_code == 202 and shape(r.get_json()) == shape(miss.get_json())
    sent_codes(services, parties["recipient"]["phone"])  # runs the queued tasks (the challenge's code task)
    with services.session_factory() as s:
        assert messages.sent_to(s, services, parties["recipient"]["phone"]) == []
    with services.session_factory() as s:
        statuses = list(s.scalars(select(SmsMessage.status).where(SmsMessage.shipment_id == canary)))
        assert "sent" not in statuses and "queued" not in statuses
    # The canary's data is outside the company: an alert (no staff account to suspend).
    (alert,) = _alerts(services, "anonymous")
    assert alert.severity == "critical" and alert.object_id == canary


def test_a_courier_handing_a_canary_to_a_locker_is_alerted_on(client, services, merchant, field_crew):
    from tests.courier_api import make_partner
    from tests.courier_api.last_mile_helpers import deliver

    (canary,) = _plant(services)
    locker = make_partner(services, kind="locker", name="丰巢快递柜")
    assert assign(client, field_crew["dispatcher"], canary).status_code == 201
    r = deliver(client, field_crew["courier"], canary, method="locker", partner_id=locker, locker_id="A-12")
    assert r.status_code == 200, r.get_json()
    actor = _actor(services, "lm_courier")
    (alert,) = _alerts(services, actor)
    assert alert.severity == "critical" and alert.object_id == canary and _suspended(services, actor)
    # The partner's pickup notice to the canary's number was never sent.
    with services.session_factory() as s:
        assert set(s.scalars(select(SmsMessage.status).where(SmsMessage.shipment_id == canary))) == {"suppressed"}


def test_a_canarys_pickup_code_leaves_the_audit_trail_a_delivered_one_leaves(client, services, merchant, field_crew):
    """Auditors are insiders: a canary must not be the assigned shipment whose pickup code never shows a
    ``message.deliver`` event. Its event looks like a real delivery's (actor, fields, purpose, outcome); nothing
    is sent."""
    from waybill.models import AuditEvent
    from waybill.outbox import relay_once
    from waybill.tasks import InProcessQueue

    (canary,) = _plant(services)
    real, _qr_real = printed(client, merchant, field_crew["sorter"])
    assert assign(client, field_crew["dispatcher"], canary).status_code == 201
    assert assign(client, field_crew["dispatcher"], real["id"], courier="lm_courier2").status_code == 201
    queue = InProcessQueue(services)
    for _ in range(10):
        if relay_once(services.session_factory, queue) == 0:
            break

    def trail(shipment_id):
        with services.session_factory() as s:
            return [(e.actor, e.role, e.fields, e.purpose, e.outcome) for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "message.deliver", AuditEvent.object_id == shipment_id))]

    assert trail(canary) == trail(real["id"]) != []
    assert sent_codes(services, _parties(services, canary)["recipient"]["phone"]) == []
    with services.session_factory() as s:
        rows = list(s.scalars(select(SmsMessage).where(SmsMessage.shipment_id == canary)))
        assert [r.status for r in rows] == ["suppressed"] and rows[0].text_ct is None


def test_planted_shipments_carry_request_ids_like_a_merchants(client, services, merchant):
    """A merchant's shipments are made by requests: canaries planted from the command line must not be the
    ``shipment.create`` events without a request id."""
    from waybill.models import AuditEvent

    planted = _plant(services, count=2)
    r = client.post("/v1/shipments", json=shipment_body("REQ-ID-1"), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    with services.session_factory() as s:
        ids = {e.object_id: e.request_id for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == "shipment.create"))}
    real = ids[r.get_json()["id"]]
    assert real is not None
    shaped = [ids[sid] for sid in planted]
    assert all(rid is not None and len(rid) == len(real) for rid in shaped) and len(set(shaped)) == 2
