"""Data subjects: SMS challenge (no oracle, throttled), code -> session (5 wrong codes end it), own data only,
access log by role and station, and no plaintext in rows, logs or audit events."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from courier_api.subjects.models import SubjectChallenge, SubjectToken
from tests.conftest import RECIPIENT, SENDER
from tests.courier_api import bearer
from tests.courier_api.subjects_helpers import (
    challenge,
    codes_sent_to,
    deliver_messages,
    direct_token,
    make_shipment,
    subject_session,
)
from waybill.messages.models import SmsMessage
from waybill.models import AuditEvent, Base, Shipment, utcnow
from waybill.retention_dates import destroyed_by
from waybill.waybill_no import new_waybill_no
from waybill.web.app import create_app

OTHER_MOBILE = "13900001111"


def _sms_count(services: Any) -> int:
    deliver_messages(services)
    with services.session_factory() as s:
        return len(s.scalars(select(SmsMessage)).all())


def test_challenge_answers_alike_whether_or_not_the_pair_matches(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    answers = {
        "match": challenge(client, shp["waybill_no"], RECIPIENT["phone"]),
        "wrong_phone": challenge(client, shp["waybill_no"], OTHER_MOBILE),
        "no_such_waybill": challenge(client, new_waybill_no(), RECIPIENT["phone"]),
        "landline_party": challenge(client, shp["waybill_no"], SENDER["phone"]),
    }
    shapes = set()
    for r in answers.values():
        assert r.status_code == 202
        body = r.get_json()
        shapes.add((tuple(sorted(body)), tuple(sorted(r.headers.keys())), len(body["challenge_id"]),
                    len(body["expires_at"])))
        assert r.headers["Cache-Control"] == "no-store"
    assert len(shapes) == 1, shapes
    # Only the matching mobile party got a code; the landline party (matched) and the others got nothing.
    assert len(codes_sent_to(services, RECIPIENT["phone"])) == 1
    assert codes_sent_to(services, OTHER_MOBILE) == []
    assert _sms_count(services) == 1
    # Each challenge is stored the same way; only a match names the shipment.
    with services.session_factory() as s:
        rows = {r.id: r for r in s.scalars(select(SubjectChallenge))}
    by_case = {k: rows[v.get_json()["challenge_id"]] for k, v in answers.items()}
    assert by_case["match"].shipment_id == shp["id"] and by_case["match"].party == "recipient"
    assert by_case["landline_party"].party == "sender"
    assert by_case["wrong_phone"].shipment_id is None and by_case["no_such_waybill"].shipment_id is None
    assert {len(r.code_hash) for r in by_case.values()} == {32}


def test_bad_input_is_refused_naming_the_field(client: Any) -> None:
    r = challenge(client, "PW123", RECIPIENT["phone"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "waybill_no"
    r = challenge(client, new_waybill_no(), "12345")
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "phone"
    assert "12345" not in r.get_data(as_text=True)


def test_the_code_opens_a_session_scoped_to_that_party(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    opened = subject_session(client, services, shp["waybill_no"], RECIPIENT["phone"])
    assert opened["token_type"] == "Bearer" and opened["party"] == "recipient"
    assert opened["waybill_no"] == shp["waybill_no"] and opened["expires_in"] == 900
    r = client.get("/v1/subject/data", headers=bearer(opened["access_token"]))
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert body["party"] == "recipient" and body["status"] == "created"
    assert body["personal_data"] == RECIPIENT and body["personal_data_status"] == "available"
    assert body["retained_until"] is None and body["retention_note"]
    assert {p["id"] for p in body["purposes"]} and all("active" in p for p in body["purposes"])
    raw = r.get_data(as_text=True)
    for value in (SENDER["name"], SENDER["phone"], SENDER["address"]):
        assert value not in raw  # never the other party's data
    # The code is used once.
    with services.session_factory() as s:
        used = s.scalars(select(SubjectChallenge).where(SubjectChallenge.used_at.is_not(None))).all()
    assert len(used) == 1


def test_five_wrong_codes_end_the_challenge(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    cid = challenge(client, shp["waybill_no"], RECIPIENT["phone"]).get_json()["challenge_id"]
    code = codes_sent_to(services, RECIPIENT["phone"])[0]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = client.post("/v1/subject/session", json={"challenge_id": cid, "code": wrong})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_code"
    r = client.post("/v1/subject/session", json={"challenge_id": cid, "code": code})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_code"
    with services.session_factory() as s:
        assert s.get(SubjectChallenge, cid).attempts == 5


def test_unmatched_and_expired_challenges_open_nothing(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    cid = challenge(client, shp["waybill_no"], OTHER_MOBILE).get_json()["challenge_id"]
    r = client.post("/v1/subject/session", json={"challenge_id": cid, "code": "000000"})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_code"
    cid = challenge(client, shp["waybill_no"], RECIPIENT["phone"]).get_json()["challenge_id"]
    code = codes_sent_to(services, RECIPIENT["phone"])[0]
    with services.session_factory() as s:
        s.execute(update(SubjectChallenge).where(SubjectChallenge.id == cid)
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    r = client.post("/v1/subject/session", json={"challenge_id": cid, "code": code})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_code"
    r = client.post("/v1/subject/session", json={"challenge_id": "sch_nope", "code": "123456"})
    assert r.status_code == 401


def _app_with(base_env: Any, services: Any, **limits: int) -> Any:
    settings = dataclasses.replace(services.settings, **limits)
    return create_app(base_env.settings, services_override=dataclasses.replace(services, settings=settings))


@pytest.mark.parametrize("limit", ["phone", "waybill", "client"])
def test_challenges_are_throttled(base_env: Any, services: Any, merchant: Any, limit: str) -> None:
    app = _app_with(base_env, services, subject_challenges_per_phone_per_hour=2,
                    subject_challenges_per_waybill_per_hour=2, subject_challenges_per_client_per_hour=2)
    client = app.test_client()
    shp = make_shipment(client, merchant)
    other = make_shipment(client, merchant, "SUBJ-2")

    def call(i: int) -> Any:
        waybill = shp["waybill_no"] if limit != "client" or i % 2 else other["waybill_no"]
        phone = RECIPIENT["phone"] if limit == "phone" else f"1390000{i:04d}"
        addr = "203.0.113.1" if limit == "client" else f"203.0.113.{10 + i}"
        if limit == "phone":
            waybill = shp["waybill_no"] if i % 2 else other["waybill_no"]
        return challenge(client, waybill, phone, addr)

    assert [call(i).status_code for i in range(2)] == [202, 202]
    refused = call(2)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["error"]["code"] == "rate_limited"


def test_a_recipient_token_never_sees_sender_data_nor_staff_routes(client: Any, merchant: Any, services: Any,
                                                                    officers: Any) -> None:
    shp = make_shipment(client, merchant)
    recipient = bearer(subject_session(client, services, shp["waybill_no"], RECIPIENT["phone"])["access_token"])
    sender = direct_token(services, shp["id"], "sender")
    # A privacy officer reads the sender's name only (a recorded, approved request).
    req = client.post("/v1/privacy/requests", headers=officers["officer"], json={
        "shipment_id": shp["id"], "purpose": "complaint", "reference": "CASE-2026-7", "fields": ["sender.name"]})
    assert req.status_code == 201, req.get_json()
    rid = req.get_json()["id"]
    assert client.post(f"/v1/privacy/requests/{rid}/approve", headers=officers["other"]).status_code == 200
    assert client.get(f"/v1/privacy/requests/{rid}/personal-data", headers=officers["officer"]).status_code == 200
    # The merchant's label shows both parties masked.
    assert client.get(f"/v1/shipments/{shp['id']}/label?format=zpl", headers=merchant.headers).status_code == 200

    def log_of(headers: dict[str, str]) -> list[dict[str, Any]]:
        r = client.get("/v1/subject/access-log", headers=headers)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
        items: list[dict[str, Any]] = r.get_json()["items"]
        return items

    mine = log_of(recipient)
    assert all(not f.startswith("sender.") for item in mine for f in item["fields"])
    assert any(item["action"] == "label.print" and item["fields"] == ["masked"] for item in mine)
    assert not any(item["role"] == "privacy_officer" for item in mine)
    theirs = log_of(sender)
    officer_reads = [i for i in theirs if i["action"] == "privacy.read"]
    assert officer_reads and officer_reads[0]["fields"] == ["sender.name"]
    assert officer_reads[0]["role"] == "privacy_officer"
    assert officer_reads[0]["purpose"] == "complaint"  # the code, not the case number or request id
    raw = str(theirs)
    for user in officers["users"].values():
        assert user.user.id not in raw and user.user.username not in raw
    assert "CASE-2026-7" not in raw
    # The sender's data view: their own data, the officer among the recipients; never the recipient's data.
    data = client.get("/v1/subject/data", headers=sender).get_json()
    assert data["personal_data"] == SENDER
    assert {"kind": "role", "recipient": "privacy_officer"}.items() <= data["disclosed_to"][0].items()
    assert RECIPIENT["phone"] not in str(data)
    # Subject tokens open no staff or merchant route; staff tokens no subject route.
    assert client.get("/v1/audit/events", headers=recipient).status_code == 403
    assert client.get(f"/v1/shipments/{shp['id']}", headers=recipient).status_code == 403
    assert client.get("/v1/subject/data", headers=officers["auditor"]).status_code == 403
    assert client.get("/v1/subject/data", headers=merchant.headers).status_code == 403


def test_sms_and_virtual_number_disclosures_are_listed(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    token = bearer(subject_session(client, services, shp["waybill_no"], RECIPIENT["phone"])["access_token"])
    data = client.get("/v1/subject/data", headers=token).get_json()
    sms = [d for d in data["disclosed_to"] if d["recipient"] == "sms_provider"]
    assert sms and sms[0]["kind"] == "provider" and sms[0]["fields"] == ["recipient.phone"]
    log = client.get("/v1/subject/access-log", headers=token).get_json()["items"]
    assert any(i["action"] == "subject.challenge" and i["purpose"] == "subject_verification" for i in log)
    delivered = [i for i in log if i["action"] == "message.deliver"]
    assert delivered and delivered[0]["partner"] == "sms_provider" and delivered[0]["fields"] == ["recipient.phone"]


def test_expired_and_revoked_tokens_are_refused(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    headers = direct_token(services, shp["id"], "recipient")
    assert client.get("/v1/subject/data", headers=headers).status_code == 200
    with services.session_factory() as s:
        s.execute(update(SubjectToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    r = client.get("/v1/subject/data", headers=headers)
    assert r.status_code == 401 and r.headers["Cache-Control"] == "no-store"
    assert client.get("/v1/subject/data", headers={"Authorization": "Bearer wbd_0123456789abcdef_x"}).status_code == 401


def test_destroyed_party_data_answers_destroyed(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    headers = direct_token(services, shp["id"], "recipient")
    # Stand-in for a destroyed key: the ciphertext no longer opens (it is bound to another row).
    from waybill.models import Shipment

    with services.session_factory() as s:
        row = s.get(Shipment, shp["id"])
        row.recipient_name_ct = services.codec.encrypt("x", table="shipments", column="recipient_name", row_id="other")
        s.commit()
    r = client.get("/v1/subject/data", headers=headers)
    assert r.status_code == 200
    assert r.get_json()["personal_data"] is None and r.get_json()["personal_data_status"] == "destroyed"


def test_no_plaintext_in_rows_logs_or_audit(client: Any, merchant: Any, services: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    shp = make_shipment(client, merchant)
    opened = subject_session(client, services, shp["waybill_no"], RECIPIENT["phone"])
    token = bearer(opened["access_token"])
    note = "请把门牌改成七号楼独特文本"
    r = client.post("/v1/subject/requests", headers=token, json={
        "type": "correct", "changes": {"address": "粤海街道科技园路9号7栋701室"}, "text": note})
    assert r.status_code == 201, r.get_json()
    client.get("/v1/subject/data", headers=token)
    secrets_ = [RECIPIENT["phone"], RECIPIENT["name"], RECIPIENT["address"], note, "粤海街道科技园路9号7栋701室",
                # The secret part: after "wbd_" and the id (it may itself contain "_": token_urlsafe).
                opened["access_token"], opened["access_token"].split("_", 2)[2]]
    with services.session_factory() as s:
        dump = []
        for table in Base.metadata.sorted_tables:
            for row in s.execute(text(f'SELECT * FROM "{table.name}"')):
                dump.append(" ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row))
        events = s.scalars(select(AuditEvent)).all()
    blob = "\n".join(dump)
    for value in secrets_:
        assert value not in blob
    audit_text = " ".join(f"{e.actor} {e.purpose} {e.fields} {e.object_id}" for e in events)
    for value in secrets_:
        assert value not in audit_text
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for value in secrets_:
        assert value not in logged


def test_an_ended_shipment_shows_until_when_its_data_is_kept(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    headers = direct_token(services, shp["id"], "recipient")
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    body = client.get("/v1/subject/data", headers=headers).get_json()
    assert body["status"] == "cancelled" and body["retained_until"] is not None
    until = datetime.fromisoformat(body["retained_until"].replace("Z", "+00:00"))
    # Whole CST days: from the start of the day after the end day plus the retention period (waybill/retention_dates).
    with services.session_factory() as s:
        ended = s.get(Shipment, shp["id"]).ended_at
    assert until == destroyed_by(ended, services.settings.retention_days)
    assert timedelta(days=180) < until - utcnow() <= timedelta(days=181)


def test_a_challenge_writes_the_same_rows_whether_or_not_it_matches(client: Any, merchant: Any, services: Any) -> None:
    """No oracle by timing: the request itself never sends (the outbox task does), so a match and a miss do
    the same work: one challenge row with a sealed code, one outbox row, one audit event, no message row."""
    from sqlalchemy import func

    from waybill.models import OutboxMessage

    shp = make_shipment(client, merchant)

    def counts() -> tuple[int, int, int, int]:
        with services.session_factory() as s:
            return tuple(int(s.scalar(select(func.count()).select_from(t)) or 0)  # type: ignore[return-value]
                         for t in (SubjectChallenge, OutboxMessage, SmsMessage, AuditEvent))

    deltas = []
    for phone in (RECIPIENT["phone"], OTHER_MOBILE, SENDER["phone"]):
        before = counts()
        assert challenge(client, shp["waybill_no"], phone).status_code == 202
        after = counts()
        deltas.append(tuple(a - b for a, b in zip(after, before, strict=True)))
    assert len(set(deltas)) == 1 and deltas[0][:3] == (1, 1, 0), deltas
    with services.session_factory() as s:
        assert all(row.code_ct is not None for row in s.scalars(select(SubjectChallenge)))
    assert len(codes_sent_to(services, RECIPIENT["phone"])) == 1  # the task sent the matched one only
    with services.session_factory() as s:  # and erased every sealed code
        assert all(row.code_ct is None for row in s.scalars(select(SubjectChallenge)))
