"""The privacy officer's full access: only through a recorded request with a purpose, itself audited."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from courier_api import privacy
from courier_api.deps import privacy_deps
from courier_api.models import PersonalDataRequest
from tests.conftest import RECIPIENT, SENDER, shipment_body
from waybill.errors import NotFound
from waybill.ids import new_id
from waybill.models import AuditEvent, utcnow
from waybill.permissions import Principal

SENDER_PHONE = "021-64321234"  # as stored: area code, dash, number
PLAINTEXT = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["address"],
             "64321234"]


def _shipment(client, merchant, order="P-1"):
    r = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers)
    assert r.status_code == 201
    return r.get_json()["id"]


def _file(client, headers, sid, **changes):
    body = {"shipment_id": sid, "purpose": "data_subject_request", "reference": "DSR-2026-0042",
            "fields": ["recipient.phone", "recipient.name", "recipient.address"]}
    body.update(changes)
    return client.post("/v1/privacy/requests", json=body, headers=headers)


def _approve(client, headers, rid):
    return client.post(f"/v1/privacy/requests/{rid}/approve", headers=headers)


def _filed_and_approved(client, officers, sid, **changes):
    """A request filed by ``officer`` and approved by ``other`` (four eyes)."""
    filed = _file(client, officers["officer"], sid, **changes)
    assert filed.status_code == 201, filed.get_json()
    approved = _approve(client, officers["other"], filed.get_json()["id"])
    assert approved.status_code == 200, approved.get_json()
    return approved.get_json()


def _events(client, auditor, action):
    r = client.get(f"/v1/audit/events?action={action}&limit=500", headers=auditor)
    assert r.status_code == 200
    return r.get_json()["items"]


def test_officer_reads_exactly_the_requested_fields_and_each_step_is_audited(client, merchant, officers, caplog):
    caplog.set_level(logging.DEBUG)
    sid = _shipment(client, merchant)
    filed = _file(client, officers["officer"], sid)
    assert filed.status_code == 201, filed.get_json()
    req = filed.get_json()
    # Fields come back in a fixed order, and filing alone reveals nothing.
    assert req["fields"] == ["recipient.name", "recipient.phone", "recipient.address"]
    assert req["purpose"] == "data_subject_request" and req["reference"] == "DSR-2026-0042"
    assert req["status"] == "pending" and req["emergency"] is False and req["approved_at"] is None
    assert not any(p in filed.get_data(as_text=True) for p in PLAINTEXT)
    # Four eyes: nothing is readable until another officer approves.
    early = client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"])
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "not_approved"
    assert not any(p in early.get_data(as_text=True) for p in PLAINTEXT)
    approved = _approve(client, officers["other"], req["id"])
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert approved.get_json()["approved_at"] is not None

    r = client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert r.headers["Cache-Control"] == "no-store"
    assert body["shipment_id"] == sid and body["request_id"] == req["id"]
    assert body["recipient"] == {"name": RECIPIENT["name"], "phone": RECIPIENT["phone"],
                                 "province": RECIPIENT["province"], "city": RECIPIENT["city"],
                                 "district": RECIPIENT["district"], "address": RECIPIENT["address"]}
    assert body["sender"] is None  # not asked for, not given (minimum necessary)
    assert client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"]).status_code == 200

    filed_events = _events(client, officers["auditor"], "privacy.request")
    reads = _events(client, officers["auditor"], "privacy.read")
    assert [(e["object_id"], e["outcome"], e["fields"]) for e in filed_events] == [
        (sid, "ok", ["recipient.address", "recipient.name", "recipient.phone"])]
    assert [(e["object_id"], e["outcome"]) for e in reads] == [(req["id"], "not_approved"), (sid, "ok"), (sid, "ok")]
    reads = [e for e in reads if e["outcome"] == "ok"]
    approvals = _events(client, officers["auditor"], "privacy.approve")
    assert [(e["actor"], e["object_id"], e["outcome"]) for e in approvals] == [
        (f"staff:{officers['users']['other'].user.id}", req["id"], "ok")]
    # Each read names the request it was made under: purpose, case reference, request id.
    assert {e["purpose"] for e in reads} == {f"data_subject_request:DSR-2026-0042:{req['id']}"}
    assert {e["actor"] for e in reads + filed_events} == {f"staff:{officers['users']['officer'].user.id}"}
    # The trail names fields, never values; neither do the logs.
    trail = json.dumps(filed_events + reads, ensure_ascii=False)
    assert not any(p in trail for p in PLAINTEXT)
    # Every field of every log record (the JSON log line is built from them), not just the messages.
    logged = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in caplog.records], ensure_ascii=False)
    assert "/v1/privacy/requests/<request_id>/personal-data" in logged
    assert not any(p in logged for p in PLAINTEXT)
    assert client.get("/v1/audit/verify", headers=officers["auditor"]).get_json()["ok"] is True


def test_sender_fields_only_when_asked(client, merchant, officers):
    sid = _shipment(client, merchant)
    req = _filed_and_approved(client, officers, sid, fields=["sender.phone"], purpose="complaint")
    body = client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["officer"]).get_json()
    assert body["recipient"] is None
    assert body["sender"] == {"phone": SENDER_PHONE}


def test_another_officers_request_answers_like_a_missing_one(client, merchant, officers, session):
    sid = _shipment(client, merchant)
    req = _file(client, officers["officer"], sid).get_json()
    theirs = client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=officers["other"])
    missing = client.get(f"/v1/privacy/requests/{new_id('pdr')}/personal-data", headers=officers["other"])
    junk = client.get("/v1/privacy/requests/not-an-id/personal-data", headers=officers["other"])
    assert theirs.status_code == missing.status_code == junk.status_code == 404
    assert theirs.data == missing.data == junk.data
    outcomes = [e["outcome"] for e in _events(client, officers["auditor"], "privacy.read")]
    assert sorted(outcomes) == ["denied", "not_found", "not_found"]


def test_an_expired_request_is_not_found_and_the_attempt_is_audited(client, merchant, officers, services):
    sid = _shipment(client, merchant)
    user = officers["users"]["officer"].user
    officer = Principal("staff", user.id, "privacy_officer")
    with services.session_factory() as s:
        req = privacy.file_request(s, privacy_deps(services), officer, sid, "legal_order", "LO-2026-7",
                                   ["recipient.name"])
        other = Principal("staff", officers["users"]["other"].user.id, "privacy_officer")
        privacy.approve_request(s, privacy_deps(services), other, req.id, now=req.created_at)
        s.commit()
        window = privacy_deps(services).window
        assert window == timedelta(minutes=services.settings.privacy_request_minutes)
        # One second before the window closes it reads; at the close it does not.
        privacy.read_request(s, privacy_deps(services), officer, req.id, now=req.created_at + window
                             - timedelta(seconds=1))
        with pytest.raises(NotFound):
            privacy.read_request(s, privacy_deps(services), officer, req.id, now=req.created_at + window)
        s.commit()
        outcomes = s.execute(select(AuditEvent.outcome).where(AuditEvent.action == "privacy.read")
                             .order_by(AuditEvent.seq)).scalars().all()
    assert outcomes == ["ok", "expired"]
    r = client.get(f"/v1/privacy/requests/{req.id}/personal-data", headers=officers["officer"])
    assert r.status_code == 200  # the real clock is still inside the window
    assert req.expires_at > utcnow()


@pytest.mark.parametrize(("change", "field"), [
    ({"purpose": "curiosity"}, "purpose"),
    ({"purpose": None}, "purpose"),
    ({"reference": "13812345678"}, "reference"),  # a phone number is not a case reference
    ({"reference": "TEL-13812345678"}, "reference"),  # nor one behind a prefix
    ({"reference": "CASE-2026-1234567"}, "reference"),  # the number part has at most 6 digits
    ({"reference": "case-2026-1"}, "reference"),
    ({"reference": "CASE-26-1"}, "reference"),
    ({"reference": "看看这个人"}, "reference"),
    ({"reference": ""}, "reference"),
    ({"fields": []}, "fields"),
    ({"fields": ["recipient.id_card"]}, "fields[0]"),
    ({"fields": "recipient.phone"}, "fields"),
    ({"shipment_id": 5}, "shipment_id"),
    ({"why": "because"}, "why"),
])
def test_bad_requests_name_the_field_and_record_nothing(client, merchant, officers, session, change, field):
    sid = _shipment(client, merchant)
    r = _file(client, officers["officer"], sid, **change)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == field
    assert not any(p in r.get_data(as_text=True) for p in PLAINTEXT + ["13812345678"])
    assert session.execute(select(func.count()).select_from(PersonalDataRequest)).scalar_one() == 0


def test_an_unknown_shipment_is_404_and_the_attempt_is_kept(client, officers):
    r = _file(client, officers["officer"], new_id("shp"))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert [e["outcome"] for e in _events(client, officers["auditor"], "privacy.request")] == ["not_found"]


def test_only_a_person_files_requests(services, session, client, merchant):
    """The permission belongs to the role, but the request must be a logged-in officer's: never the CLI
    or a made-up principal of another kind."""
    from waybill.errors import PermissionDenied

    sid = _shipment(client, merchant)
    for kind in ("system", "merchant"):
        with pytest.raises(PermissionDenied):
            privacy.file_request(session, privacy_deps(services), Principal(kind, "x", "privacy_officer"), sid,
                                 "complaint", "CASE-2026-1", ["recipient.name"])
