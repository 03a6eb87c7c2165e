"""Subjects' requests and the privacy office's queue: validation, due dates, own-only reads, decisions
(correction re-encrypts, re-masks, re-indexes, re-routes and revokes the label token; deletion waits for the end of
delivery; withdrawal; complaint), deciding twice, the overdue alert."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from courier_api.subjects.models import SubjectRequest
from courier_api.subjects.requests import raise_overdue_alerts
from tests.conftest import RECIPIENT, SENDER
from tests.courier_api.subjects_helpers import direct_token, make_shipment, shipment_row
from waybill.crypto.vault import subject_key_of
from waybill.models import AuditEvent, QrToken, utcnow
from waybill.phone_index import phone_index

NEW_ADDRESS = "西丽街道留仙大道1001号9栋901室"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _file(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/v1/subject/requests", headers=headers, json=body)


def test_requests_are_validated_naming_the_field(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    cases = [
        ({"type": "correct", "changes": {"phone": "12"}}, "changes.phone", "validation_error"),
        ({"type": "correct", "changes": {"district": "不存在区"}}, "changes.district", "invalid_region"),
        ({"type": "correct", "changes": {"email": "x@example.com"}}, "changes", "validation_error"),
        ({"type": "correct"}, "changes", "validation_error"),
        ({"type": "delete", "changes": {"name": "张三"}}, "changes", "validation_error"),
        ({"type": "complaint"}, "text", "validation_error"),
        ({"type": "erase"}, "type", "validation_error"),
    ]
    for body, field, code in cases:
        r = _file(client, token, **body)
        assert r.status_code == 422, (body, r.get_json())
        assert r.get_json()["error"]["field"] == field and r.get_json()["error"]["code"] == code, body
    with services.session_factory() as s:
        assert s.scalars(select(SubjectRequest)).all() == []


def test_a_request_is_received_with_its_due_date_and_read_by_its_subject_only(client: Any, merchant: Any,
                                                                               services: Any) -> None:
    shp = make_shipment(client, merchant)
    recipient = direct_token(services, shp["id"], "recipient")
    r = _file(client, recipient, type="delete")
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    assert body["status"] == "received" and body["type"] == "delete" and "reason" not in body
    assert timedelta(0) < _ts(body["due_at"]) - _ts(body["received_at"]) <= timedelta(days=30)
    # 15 working days is always more than 15 and less than 30 calendar days.
    assert _ts(body["due_at"]) - _ts(body["received_at"]) < timedelta(days=29)
    complaint = _file(client, recipient, type="complaint", text="快递员态度不好").get_json()
    assert _ts(complaint["due_at"]) - _ts(complaint["received_at"]) == timedelta(days=30)
    assert client.get(f"/v1/subject/requests/{body['id']}", headers=recipient).get_json()["id"] == body["id"]
    # The other party of the same shipment, and a subject of another shipment: 404, like a missing id.
    sender = direct_token(services, shp["id"], "sender")
    other = direct_token(services, make_shipment(client, merchant, "SUBJ-9")["id"], "recipient")
    for headers in (sender, other):
        r = client.get(f"/v1/subject/requests/{body['id']}", headers=headers)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/subject/requests/sjr_01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=sender).status_code == 404


def test_the_queue_lists_pages_and_is_the_officers_only(client: Any, merchant: Any, services: Any,
                                                        officers: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    ids = [_file(client, token, type="complaint", text=f"第{i}次投诉").get_json()["id"] for i in range(3)]
    first = client.get("/v1/privacy/subject-requests?limit=2", headers=officers["officer"])
    assert first.status_code == 200
    page = first.get_json()
    assert [i["id"] for i in page["items"]] == ids[:2] and page["next_cursor"]
    item = page["items"][0]
    assert {"id", "type", "status", "received_at", "due_at", "days_left", "overdue"} <= set(item)
    assert item["overdue"] is False and 28 <= item["days_left"] <= 30
    rest = client.get(f"/v1/privacy/subject-requests?limit=2&cursor={page['next_cursor']}",
                      headers=officers["officer"]).get_json()
    assert [i["id"] for i in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    assert client.get("/v1/privacy/subject-requests?status=completed",
                      headers=officers["officer"]).get_json()["items"] == []
    for query, field in (("limit=0", "limit"), ("limit=100000", "limit"), ("status=open", "status"),
                         ("cursor=zzz", "cursor"), ("x=1", "x")):
        r = client.get(f"/v1/privacy/subject-requests?{query}", headers=officers["officer"])
        assert r.status_code == 422 and r.get_json()["error"]["field"] == field, query
    assert client.get("/v1/privacy/subject-requests", headers=officers["auditor"]).status_code == 403
    assert client.get("/v1/privacy/subject-requests", headers=token).status_code == 403


def test_reject_needs_a_reason_the_subject_then_sees_and_deciding_twice_conflicts(
        client: Any, merchant: Any, services: Any, officers: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    rid = _file(client, token, type="delete").get_json()["id"]
    url = f"/v1/privacy/subject-requests/{rid}/decision"
    r = client.post(url, headers=officers["officer"], json={"decision": "reject"})
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "reason"
    reason = "依法需保存至争议处理完毕；如有异议可向网信部门投诉"
    r = client.post(url, headers=officers["officer"], json={"decision": "reject", "reason": reason})
    assert r.status_code == 200 and r.get_json()["status"] == "rejected"
    mine = client.get(f"/v1/subject/requests/{rid}", headers=token).get_json()
    assert mine["status"] == "rejected" and mine["reason"] == reason
    again = client.post(url, headers=officers["other"], json={"decision": "complete"})
    assert again.status_code == 409
    assert client.post("/v1/privacy/subject-requests/sjr_01ARZ3NDEKTSV4RRFFQ69G5FAV/decision",
                       headers=officers["officer"], json={"decision": "complete"}).status_code == 404
    with services.session_factory() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "subject_request.decide")).all()
    assert reason not in str([(e.purpose, e.fields) for e in events])


def test_completing_a_correction_reencrypts_remasks_reindexes_reroutes_and_revokes_the_label(
        client: Any, merchant: Any, services: Any, officers: Any) -> None:
    shp = make_shipment(client, merchant)
    assert client.get(f"/v1/shipments/{shp['id']}/label?format=zpl", headers=merchant.headers).status_code == 200
    token = direct_token(services, shp["id"], "recipient")
    changes = {"phone": "139 0000 2222", "district": "福田区", "address": NEW_ADDRESS}
    rid = _file(client, token, type="correct", changes=changes).get_json()["id"]
    assert client.get(f"/v1/subject/requests/{rid}", headers=token).get_json()["changes"] == changes
    listed = client.get("/v1/privacy/subject-requests", headers=officers["officer"]).get_json()["items"]
    assert listed and "changes" not in listed[0]  # the queue shows no personal data
    detail = client.get(f"/v1/privacy/subject-requests/{rid}", headers=officers["officer"]).get_json()
    assert detail["changes"] == changes and detail["overdue"] is False
    with services.session_factory() as s:
        read = s.scalars(select(AuditEvent).where(AuditEvent.action == "subject_request.read")).all()
    assert set(read[-1].fields) == {"recipient.phone", "recipient.district", "recipient.address"}
    r = client.post(f"/v1/privacy/subject-requests/{rid}/decision", headers=officers["officer"],
                    json={"decision": "complete"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "completed"
    data = client.get("/v1/subject/data", headers=token).get_json()["personal_data"]
    assert data == dict(RECIPIENT, phone="13900002222", district="福田区", address=NEW_ADDRESS)
    after = client.get(f"/v1/shipments/{shp['id']}", headers=merchant.headers).get_json()
    assert after["recipient"]["phone"] == "139******22" and after["recipient"]["district"] == "福田区"
    assert after["sorting_code"] != shp["sorting_code"]
    assert after["sender"] == shp["sender"]
    row = shipment_row(services, shp["id"])
    assert row.recipient_phone_bidx == phone_index(services.codec, merchant.id, "recipient", "13900002222")
    with services.session_factory() as s:
        kid = services.subject_keys.key_id(s, shp["id"], "recipient")
        req_row = s.get(SubjectRequest, rid)
    # Everything re-sealed is under the recipient's own key (destroying it destroys the correction too).
    assert kid is not None and {subject_key_of(b) for b in (row.recipient_name_ct, row.recipient_phone_ct,
                                                            row.recipient_address_ct, row.recipient_masked_ct,
                                                            req_row.changes_ct)} == {kid}
    with services.session_factory() as s:
        tokens = s.scalars(select(QrToken).where(QrToken.shipment_id == shp["id"])).all()
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "shipment.correct")).all()
    assert tokens and all(t.revoked_at is not None and t.revoke_reason == "subject_correction" for t in tokens)
    assert events and set(events[0].fields) == {"recipient.phone", "recipient.district", "recipient.address"}
    assert NEW_ADDRESS not in str([(e.purpose, e.fields) for e in events])


def test_a_deletion_waits_for_the_end_of_delivery(client: Any, merchant: Any, services: Any, officers: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "sender")
    rid = _file(client, token, type="delete").get_json()["id"]
    r = client.post(f"/v1/privacy/subject-requests/{rid}/decision", headers=officers["officer"],
                    json={"decision": "complete"})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "in_delivery"
    assert client.get(f"/v1/subject/requests/{rid}", headers=token).get_json()["status"] == "received"
    assert client.get("/v1/subject/data", headers=token).get_json()["personal_data"] == SENDER


def test_withdrawal_and_complaint_are_carried_out(client: Any, merchant: Any, services: Any, officers: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    rid = _file(client, token, type="withdraw_consent").get_json()["id"]
    r = client.post(f"/v1/privacy/subject-requests/{rid}/decision", headers=officers["officer"],
                    json={"decision": "complete"})
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    assert "recipient" in (shipment_row(services, shp["id"]).consent_withdrawn or {})
    purposes = client.get("/v1/subject/data", headers=token).get_json()["purposes"]
    assert all(p["active"] is p["required"] for p in purposes)
    cid = _file(client, token, type="complaint", text="包裹破损").get_json()["id"]
    url = f"/v1/privacy/subject-requests/{cid}/decision"
    assert client.post(url, headers=officers["officer"], json={"decision": "complete"}).status_code == 422
    r = client.post(url, headers=officers["officer"], json={"decision": "complete", "reason": "已赔付并致歉"})
    assert r.status_code == 200 and r.get_json()["reason"] == "已赔付并致歉"


def test_overdue_alerts_are_raised_once_per_state(client: Any, merchant: Any, services: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    rid = _file(client, token, type="complaint", text="未收到包裹").get_json()["id"]
    with services.session_factory() as s:
        assert raise_overdue_alerts(s, warn_days=3) == 0  # 30 days left: nothing yet
        s.execute(update(SubjectRequest).where(SubjectRequest.id == rid).values(due_at=utcnow() + timedelta(days=2)))
        assert raise_overdue_alerts(s, warn_days=3) == 1
        assert raise_overdue_alerts(s, warn_days=3) == 0
        s.execute(update(SubjectRequest).where(SubjectRequest.id == rid).values(due_at=utcnow() - timedelta(hours=1)))
        assert raise_overdue_alerts(s, warn_days=3) == 1
        assert raise_overdue_alerts(s, warn_days=3) == 0
        s.commit()
        alerts = s.scalars(select(AuditEvent).where(AuditEvent.action == "alert.subject_request_overdue")).all()
    assert [a.purpose for a in alerts] == ["severity=warning;state=due_soon", "severity=critical;state=overdue"]
    assert {a.object_id for a in alerts} == {rid}


def test_the_overdue_job_is_registered_with_its_handler(services: Any) -> None:
    from courier_api.extension import extension

    jobs = {j.topic for j in extension.periodic_jobs()}
    assert jobs and jobs <= set(extension.task_handlers(services))


def test_a_deletion_after_the_end_of_delivery_destroys_the_party(client: Any, merchant: Any, services: Any,
                                                                  officers: Any) -> None:
    shp = make_shipment(client, merchant)
    token = direct_token(services, shp["id"], "recipient")
    rid = _file(client, token, type="delete", text="请删除我的信息").get_json()["id"]
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    r = client.post(f"/v1/privacy/subject-requests/{rid}/decision", headers=officers["officer"],
                    json={"decision": "complete"})
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    data = client.get("/v1/subject/data", headers=token).get_json()
    assert data["personal_data"] is None and data["personal_data_status"] == "destroyed"
    # The request's own text went with the party's key; the request itself (its dates and status) stays.
    mine = client.get(f"/v1/subject/requests/{rid}", headers=token).get_json()
    assert mine["status"] == "completed" and "text" not in mine
    sender = direct_token(services, shp["id"], "sender")
    assert client.get("/v1/subject/data", headers=sender).get_json()["personal_data"] == SENDER


def test_open_requests_are_bounded_per_type_and_party(client: Any, merchant: Any, services: Any,
                                                      officers: Any) -> None:
    shp = make_shipment(client, merchant)
    recipient = direct_token(services, shp["id"], "recipient")
    first = _file(client, recipient, type="delete")
    assert first.status_code == 201
    again = _file(client, recipient, type="delete")
    assert again.status_code == 409
    assert again.get_json()["error"] == {"code": "request_open", "message": again.get_json()["error"]["message"],
                                         "field": "type"}
    # Complaints: three open at once, not four.
    for i in range(3):
        assert _file(client, recipient, type="complaint", text=f"第{i}次投诉").status_code == 201
    assert _file(client, recipient, type="complaint", text="第四次").status_code == 409
    # The other party is not held back.
    assert _file(client, direct_token(services, shp["id"], "sender"), type="delete").status_code == 201
    with services.session_factory() as s:
        assert len(s.scalars(select(SubjectRequest).where(SubjectRequest.type == "delete")).all()) == 2
    # Once decided, the party may file that type again.
    r = client.post(f"/v1/privacy/subject-requests/{first.get_json()['id']}/decision", headers=officers["officer"],
                    json={"decision": "reject", "reason": "派送中，暂不能删除"})
    assert r.status_code == 200, r.get_json()
    assert _file(client, recipient, type="delete").status_code == 201
