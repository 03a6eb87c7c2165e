"""What is served is what /openapi.json describes: every route with a documented JSON answer is driven
through its real flow (merchant, labels, dispatch, courier, audit, privacy, auth, operations), and each
answer the app serves, success or error, must match the schema the document gives for its status.

A drift either way fails here: a field served but not in the document, a documented field missing or of
another type, a timestamp in another format, a status the route does not document, or a documented
route that no flow below reaches (add it to the flow).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from courier_api.staff import set_phone
from tests.conftest import shipment_body
from tests.courier_api import bearer, login, make_staff, pickup_code
from tests.courier_api.subjects_helpers import codes_sent_to
from tests.openapi_check import AnswerRecorder, check_answer, documented_json_routes
from tests.printing.label_helpers import decode, pdf_pages_as_images
from tests.webhooks.receiver import Receiver
from waybill import outbox, tasks, webhooks, witnesses
from waybill.alerts import store as alert_store
from waybill.audit import checkpoints
from waybill.models import OutboxMessage
from waybill.permissions import SYSTEM, Principal
from waybill.readiness import Readiness
from waybill.uow import unit_of_work
from waybill.virtual_numbers import add_numbers
from waybill.web.app import create_app

STATION = "755-W012"  # the recipient of shipment_body() is delivered from here
# Documented answers driven by a flow of their own elsewhere, where the app is built differently.
ELSEWHERE = {
    # Only a provider that takes pushed receipts (Aliyun) answers 200: tests/virtual_numbers/test_receipt_push.py.
    ("/v1/phone/receipts/{token}", "post", 200),
}


class _DatabaseDown(Readiness):
    def check_database(self) -> Any:
        raise ConnectionError("down")


@pytest.fixture
def recorded(app):
    return AnswerRecorder(app)  # before the app's first request: Flask refuses hooks after it


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    return r.get_json()


def test_every_documented_answer_matches_the_document(recorded, app, client, merchant, services):
    with services.session_factory() as s:
        add_numbers(s, ["17000000011"])
        s.commit()
    staff = {key: make_staff(services, name, role, station) for key, name, role, station in (
        ("sorter", "oa_sorter", "sorter", STATION), ("dispatcher", "oa_disp", "dispatcher", STATION),
        ("courier", "oa_courier", "courier", STATION), ("auditor", "oa_auditor", "auditor", None),
        ("officer", "oa_officer", "privacy_officer", None), ("other_officer", "oa_officer2", "privacy_officer", None),
        ("admin", "oa_admin", "admin", None))}
    with services.session_factory() as s:
        set_phone(s, SYSTEM, "oa_courier", "13700001234", services.codec)
        s.commit()
    h = {key: bearer(_ok(login(client, new))["access_token"]) for key, new in staff.items()}
    m = merchant.headers

    # Merchant: create (and replay), batch with a good and a bad item, read, list, search, cancel.
    shp = _ok(client.post("/v1/shipments", json=shipment_body("OA-1"), headers={**m, "Idempotency-Key": "oa-1"}),
              201)
    _ok(client.post("/v1/shipments", json=shipment_body("OA-1"), headers={**m, "Idempotency-Key": "oa-1"}), 201)
    batch = _ok(client.post("/v1/shipments/batch", json={"shipments": [
        shipment_body("OA-2"), shipment_body("OA-3", parcel={"weight_g": 0})]}, headers=m))
    assert [r["status"] for r in batch["results"]] == ["created", "error"]
    _ok(client.get(f"/v1/shipments/{shp['id']}", headers=m))
    page = _ok(client.get("/v1/shipments?limit=1", headers=m))
    _ok(client.get(f"/v1/shipments?limit=1&cursor={page['next_cursor']}", headers=m))
    _ok(client.post("/v1/shipments/search", json={"recipient_phone": shipment_body()["recipient"]["phone"]},
                    headers=m))
    _ok(client.post(f"/v1/shipments/{batch['results'][0]['shipment']['id']}/cancel", headers=m))
    assert client.get("/v1/shipments/shp_nothing", headers=m).status_code == 404  # an error answer, checked too

    # Print, dispatch, scan, call, deliver.
    job = client.post("/v1/print-jobs", json={"shipment_ids": [shp["id"]], "format": "pdf"}, headers=h["sorter"])
    assert job.status_code == 200
    (page_image,) = pdf_pages_as_images(job.data)
    qr = next(text for fmt, text in decode(page_image) if "QR" in fmt.upper())
    _ok(client.post("/v1/dispatch/assignments", json={"shipment_id": shp["id"], "courier": "oa_courier"},
                    headers=h["dispatcher"]), 201)
    _ok(client.post("/v1/courier/scan", json={"token": qr}, headers=h["courier"]))
    _ok(client.post(f"/v1/courier/shipments/{shp['id']}/call", headers=h["courier"]))
    # The recipient's SMS code, resent once by the dispatcher (the first stops working).
    _ok(client.post(f"/v1/dispatch/shipments/{shp['id']}/pickup-code", headers=h["dispatcher"]), 202)
    _ok(client.post(f"/v1/courier/shipments/{shp['id']}/deliver",
                    json={"method": "handover", "pickup_code": pickup_code(services)}, headers=h["courier"]))
    # Partners: registered by an admin, listed for the courier, named by a station delivery; the disclosure list.
    partner = _ok(client.post("/v1/partners", json={"name": "菜鸟驿站", "kind": "station", "agreement_ref": "CN-1",
                                                    "agreement_expires": "2099-12-31"}, headers=h["admin"]), 201)
    _ok(client.get("/v1/partners?kind=station", headers=h["courier"]))
    second = _ok(client.post("/v1/shipments", json=shipment_body("OA-4"), headers=m), 201)
    _ok(client.post("/v1/print-jobs", json={"shipment_ids": [second["id"]], "format": "zpl"}, headers=h["sorter"]))
    _ok(client.post("/v1/dispatch/assignments", json={"shipment_id": second["id"], "courier": "oa_courier"},
                    headers=h["dispatcher"]), 201)
    _ok(client.post(f"/v1/courier/shipments/{second['id']}/deliver",
                    json={"method": "station", "partner_id": partner["id"]}, headers=h["courier"]))
    assert _ok(client.get("/v1/privacy/disclosures?limit=5", headers=h["auditor"]))["items"]

    # Movement: a sorting scan of a printed parcel (and of a number nobody issued), a failed attempt, the history.
    moving = _ok(client.post("/v1/shipments", json=shipment_body("OA-MOVE"), headers=m), 201)
    assert client.post("/v1/print-jobs", json={"shipment_ids": [moving["id"]], "format": "zpl"},
                       headers=h["sorter"]).status_code == 200
    scans = _ok(client.post("/v1/sorting/scans", json={"waybill_nos": [moving["waybill_no"], "PW0000000000000"],
                                                       "event": "arrival"}, headers=h["sorter"]))
    assert [r.get("status") or r["error"]["code"] for r in scans["results"]] == ["in_transit", "not_found"]
    _ok(client.post("/v1/dispatch/assignments", json={"shipment_id": moving["id"], "courier": "oa_courier"},
                    headers=h["dispatcher"]), 201)
    failed = _ok(client.post(f"/v1/courier/shipments/{moving['id']}/attempt", json={"reason": "not_home"},
                             headers=h["courier"]))
    assert failed["status"] == "delivery_failed"
    history = _ok(client.get(f"/v1/shipments/{moving['id']}/events", headers=m))
    assert [i["status"] for i in history["items"]][-1] == "delivery_failed"

    # Privacy officer: file a request for part of one party and all of the other, then read it.
    req = _ok(client.post("/v1/privacy/requests", json={
        "shipment_id": shp["id"], "purpose": "complaint", "reference": "CASE-2026-0001",
        "fields": ["sender.phone", "recipient.name", "recipient.address"]}, headers=h["officer"]), 201)
    assert req["status"] == "pending"
    assert _ok(client.post(f"/v1/privacy/requests/{req['id']}/approve", headers=h["other_officer"]))[
        "status"] == "approved"
    read = _ok(client.get(f"/v1/privacy/requests/{req['id']}/personal-data", headers=h["officer"]))
    assert set(read["sender"]) == {"phone"}
    # Retention: a legal hold placed and released, and the destruction records.
    hold = _ok(client.post("/v1/privacy/holds", json={"shipment_ids": [shp["id"]], "reason": "公安调证 A-1"},
                           headers=h["officer"]), 201)
    assert _ok(client.delete(f"/v1/privacy/holds/{hold['id']}", headers=h["officer"]))["status"] == "released"
    _ok(client.get("/v1/privacy/destructions?limit=5", headers=h["auditor"]))

    # The recipient as a data subject: SMS code, session, own data and access log, a request the office decides.
    _ok(client.get("/v1/privacy-notice"))
    phone = shipment_body()["recipient"]["phone"]
    challenge = _ok(client.post("/v1/subject/challenge", json={"waybill_no": shp["waybill_no"], "phone": phone}), 202)
    code = codes_sent_to(services, phone)[0]
    session = _ok(client.post("/v1/subject/session", json={"challenge_id": challenge["challenge_id"], "code": code}))
    subject = bearer(session["access_token"])
    data = _ok(client.get("/v1/subject/data", headers=subject))
    assert data["status"] == "delivered" and data["retained_until"]
    # The delivery above disclosed the recipient's data: the courier (scan), the number provider (call), SMS.
    assert {(d["kind"], d["recipient"]) for d in data["disclosed_to"]} >= {
        ("role", "courier"), ("provider", "virtual_number_provider"), ("provider", "sms_provider")}
    _ok(client.get("/v1/subject/access-log", headers=subject))
    filed = _ok(client.post("/v1/subject/requests", json={"type": "complaint", "text": "包裹破损"},
                            headers=subject), 201)
    _ok(client.get("/v1/privacy/subject-requests?limit=5", headers=h["officer"]))
    assert _ok(client.get(f"/v1/privacy/subject-requests/{filed['id']}", headers=h["officer"]))["text"] == "包裹破损"
    _ok(client.post(f"/v1/privacy/subject-requests/{filed['id']}/decision",
                    json={"decision": "reject", "reason": "已另行处理"}, headers=h["officer"]))
    assert _ok(client.get(f"/v1/subject/requests/{filed['id']}", headers=subject))["reason"] == "已另行处理"
    # The monthly privacy report of this month (Asia/Shanghai), as JSON.
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    assert _ok(client.get(f"/v1/privacy/reports/{month}", headers=h["auditor"]))["month"] == month

    # Incidents: record (and a refused body), list, read, a timeline entry, notify, the report; unknown ids.
    inc = _ok(client.post("/v1/incidents", json={"title": "OA 事件", "kind": "loss", "detected_at":
                                                 "2026-01-01T00:00:00Z", "scope": {"shipment_ids": [shp["id"]]}},
                          headers=h["officer"]), 201)
    assert client.post("/v1/incidents", json={"title": "OA", "kind": "flood", "detected_at": "2026-01-01T00:00:00Z",
                                              "scope": {"shipment_ids": [shp["id"]]}},
                       headers=h["officer"]).status_code == 422
    _ok(client.get("/v1/incidents?limit=5", headers=h["auditor"]))
    assert client.get("/v1/incidents?limit=0", headers=h["auditor"]).status_code == 422
    _ok(client.get(f"/v1/incidents/{inc['id']}", headers=h["auditor"]))
    _ok(client.post(f"/v1/incidents/{inc['id']}/timeline", json={"action": "note", "note": "OA"},
                    headers=h["officer"]), 201)
    assert client.post(f"/v1/incidents/{inc['id']}/timeline", json={"action": "x"},
                       headers=h["officer"]).status_code == 422
    _ok(client.post(f"/v1/incidents/{inc['id']}/notify", headers=h["officer"]))
    _ok(client.get(f"/v1/incidents/{inc['id']}/report", headers=h["officer"]))
    assert client.get(f"/v1/incidents/{inc['id']}/report?format=doc", headers=h["officer"]).status_code == 422
    for path in ("", "/report"):
        assert client.get(f"/v1/incidents/inc_missing{path}", headers=h["officer"]).status_code == 404
    assert client.post("/v1/incidents/inc_missing/notify", headers=h["officer"]).status_code == 404
    assert client.post("/v1/incidents/inc_missing/timeline", json={"action": "note"},
                       headers=h["officer"]).status_code == 404
    # Oversight: an alert listed (auditor), resolved once (officer: again 409, unknown 404), a bad filter 422.
    with services.session_factory() as s:
        alert_store.fire(s, Principal(kind="staff", id=staff["courier"].user.id, role="courier", station=STATION),
                         "not_found_burst")
        s.commit()
    alert = _ok(client.get("/v1/alerts?status=open&limit=5", headers=h["auditor"]))["items"][0]
    assert _ok(client.post(f"/v1/alerts/{alert['id']}/resolve", json={"resolution": "核查无异常"},
                           headers=h["officer"]))["status"] == "resolved"
    assert client.post(f"/v1/alerts/{alert['id']}/resolve", json={"resolution": "再次"},
                       headers=h["officer"]).status_code == 409
    assert client.post("/v1/alerts/alr_01ARZ3NDEKTSV4RRFFQ69G5FAV/resolve", json={"resolution": "x"},
                       headers=h["admin"]).status_code == 404
    assert client.get("/v1/alerts?status=closed", headers=h["auditor"]).status_code == 422

    # Auditor, operations.
    _ok(client.get("/v1/audit/events?limit=5", headers=h["auditor"]))
    _ok(client.get("/v1/audit/verify", headers=h["auditor"]))
    with unit_of_work(services.session_factory) as tx:
        assert witnesses.issue(tx, checkpoints.Signer(services.keys), None, SYSTEM)[0] is not None
    page = _ok(client.get("/v1/audit/checkpoints?limit=5", headers=h["auditor"]))
    assert page["items"][0]["heads"] and page["next_cursor"] is None
    assert client.get("/v1/audit/checkpoints?cursor=x", headers=h["auditor"]).status_code == 422
    _ok(client.get("/v1/audit/verify?since_checkpoint=1", headers=h["auditor"]))
    assert client.get("/v1/audit/verify?since_checkpoint=yes", headers=h["auditor"]).status_code == 422
    _ok(client.get("/healthz"))
    _ok(client.get("/v1/privacy-notice"))
    _ok(client.get("/readyz"))
    down = dataclasses.replace(services, readiness=_DatabaseDown(services.settings, services.keys))
    other = create_app(services.settings, services_override=down)
    other_recorded = AnswerRecorder(other)
    _ok(other.test_client().get("/readyz"), 503)

    # Webhooks: on an app that may reach the loopback receiver, an endpoint gets one delivery (a cancellation).
    hooked_svc = dataclasses.replace(services, settings=dataclasses.replace(services.settings,
                                                                            webhook_allow_private=True))
    hooked = create_app(services.settings, services_override=hooked_svc)
    hooked_recorded = AnswerRecorder(hooked)
    hc = hooked.test_client()
    receiver = Receiver()
    try:
        hook = _ok(hc.post("/v1/webhooks", json={"url": receiver.url, "events": ["shipment.status_changed"]},
                           headers=m), 201)
        _ok(hc.get("/v1/webhooks", headers=m))
        _ok(hc.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=m))
        cancelled = _ok(hc.post("/v1/shipments", json=shipment_body("OA-HOOK"), headers=m), 201)
        _ok(hc.post(f"/v1/shipments/{cancelled['id']}/cancel", headers=m))
        with services.session_factory() as s:
            (message,) = s.scalars(select(OutboxMessage.id).where(OutboxMessage.topic == webhooks.TOPIC)).all()
        assert outbox.run_message(services.session_factory, tasks.handlers(hooked_svc), message)
        assert len(receiver.received) == 1
        log = _ok(hc.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=5", headers=m))
        assert [i["ok"] for i in log["items"]] == [True]
        _ok(hc.delete(f"/v1/webhooks/{hook['id']}", headers=m))
        assert hc.delete(f"/v1/webhooks/{hook['id']}", headers=m).status_code == 404
    finally:
        receiver.close()

    doc = _ok(client.get("/openapi.json"))
    answers = recorded.answers + other_recorded.answers + hooked_recorded.answers
    for answer in answers:
        if answer.path != "/openapi.json":
            check_answer(doc, answer)
    served = {(a.path, a.method, a.status) for a in answers}
    missing = documented_json_routes(app, doc) - served - ELSEWHERE
    assert not missing, f"documented JSON answers no flow here produced: {sorted(missing)}"
