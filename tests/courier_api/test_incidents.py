"""The incident register: an insider's window found from the audit log, notices to exactly those people, the
regulator report (JSON and PDF) without their personal data; validation, 404s, drills, legal holds by incident.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select, text

from courier_api import delivery
from courier_api.deps import delivery_deps
from tests.conftest import BACKEND, RECIPIENT, SENDER, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.subjects_helpers import direct_token
from waybill import messages, print_jobs
from waybill.incidents import month_summary
from waybill.incidents.models import Incident, IncidentSubject
from waybill.models import utcnow
from waybill.outbox import relay_once
from waybill.permissions import Principal
from waybill.tasks import InProcessQueue
from waybill.virtual_numbers import add_numbers

STATION = "755-W012"
PEOPLE = [("司马相如", "13811110001", "粤海街道科技园路7号1栋101室"),
          ("上官婉儿", "13811110002", "粤海街道高新南一道9号2栋202室"),
          ("独孤求败", "13811110003", "粤海街道深南大道9988号3栋303室"),
          ("东方不败", "13811110004", "粤海街道沙河西路3011号4栋404室")]  # the last one is never scanned
SCANNED = 3


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def _deliver_all(services):
    queue = InProcessQueue(services)
    for _ in range(10):
        if relay_once(services.session_factory, queue) == 0:
            break


def _notices(services, phone):
    _deliver_all(services)
    with services.session_factory() as s:
        return [m["text"] for m in messages.sent_to(s, services, phone) if m["template"] == "incident_notice"]


@pytest.fixture
def scene(client, services, merchant, officers):
    """Four parcels out for delivery with one courier; the courier scans three of them over HTTP."""
    with services.session_factory() as s:
        add_numbers(s, ["17000000051", "17000000052"])
        s.commit()
    courier = make_staff(services, "inc_courier", "courier", STATION)
    dispatcher = make_staff(services, "inc_disp", "dispatcher", STATION)
    r = login(client, courier)
    assert r.status_code == 200, r.get_json()
    courier_h = bearer(r.get_json()["access_token"])
    ids, tokens = [], []
    for i, (name, phone, address) in enumerate(PEOPLE):
        body = shipment_body(f"INC-{i}", recipient=dict(RECIPIENT, name=name, phone=phone, address=address))
        r = client.post("/v1/shipments", json=body, headers=merchant.headers)
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    with services.session_factory() as s:
        sorter = Principal("staff", "inc-printer", "sorter", STATION)
        tokens = [m.token for m in print_jobs.issue_print_job(s, services.label_deps, sorter, ids)]
        disp = Principal("staff", dispatcher.user.id, "dispatcher", STATION)
        for sid in ids:
            delivery.assign(s, disp, sid, "inc_courier", provider=services.provider,
                            pickup=delivery_deps(services).pickup)
        s.commit()
    start = utcnow() - timedelta(seconds=1)
    for token in tokens[:SCANNED]:
        r = client.post("/v1/courier/scan", json={"token": token}, headers=courier_h)
        assert r.status_code == 200, r.get_json()
    end = utcnow() + timedelta(seconds=1)
    return {"ids": ids, "actor": f"staff:{courier.user.id}", "from": _iso(start), "to": _iso(end),
            "officer": officers["officer"], "auditor": officers["auditor"]}


def _incident(scene, **changes):
    body = {"title": "快递员账号疑似被出租", "kind": "unauthorised_access", "detected_at": _iso(utcnow()),
            "scope": {"actor": scene["actor"], "from": scene["from"], "to": scene["to"]},
            "found_by": "安全值班员", "location": "南山区科技园站点", "system": "派送系统",
            "connected_effects": "无", "law_enforcement_contacted": True,
            "cause": "账号凭证外泄", "possible_harm": "诈骗电话", "remedies": "已停用账号并重置口令"}
    body.update(changes)
    return body


def test_an_insiders_window_finds_exactly_those_parties_and_notifies_exactly_them(client, services, scene):
    r = client.post("/v1/incidents", json=_incident(scene), headers=scene["officer"])
    assert r.status_code == 201, r.get_json()
    made = r.get_json()
    assert set(made) == {"id", "status", "affected_subjects", "report_due_at"}
    assert made["status"] == "open" and made["affected_subjects"] == SCANNED
    with services.session_factory() as s:
        affected = set(s.execute(select(IncidentSubject.shipment_id, IncidentSubject.party)
                                 .where(IncidentSubject.incident_id == made["id"])))
        row = s.get(Incident, made["id"])
        assert row.report_rule.startswith("cac_incident_reporting_2025-11-01:significant_and_above:4h")
        assert row.report_due_at - row.detected_at == timedelta(hours=4)
        raw = s.execute(text("SELECT * FROM incidents")).all()
    assert affected == {(sid, "recipient") for sid in scene["ids"][:SCANNED]}
    # Free text is stored encrypted: none of it in the row as stored.
    dump = repr(raw).encode().decode("unicode_escape", errors="ignore") + repr(raw)
    for plain in ("快递员账号疑似被出租", "安全值班员", "南山区科技园站点", "已停用账号并重置口令"):
        assert plain not in dump

    r = client.post(f"/v1/incidents/{made['id']}/notify", headers=scene["officer"])
    assert r.status_code == 200 and r.get_json() == {"notified": SCANNED}
    # Idempotent: a second notify reaches nobody again.
    r = client.post(f"/v1/incidents/{made['id']}/notify", headers=scene["officer"])
    assert r.status_code == 200 and r.get_json() == {"notified": 0}
    for _name, phone, _address in PEOPLE[:SCANNED]:
        found = _notices(services, phone)
        assert len(found) == 1 and made["id"] in found[0], found
    assert _notices(services, PEOPLE[SCANNED][1]) == []  # never scanned: never notified
    with services.session_factory() as s:
        summary = month_summary(s, utcnow() - timedelta(days=1), utcnow() + timedelta(days=1))
    assert summary["total"] == 1 and summary["by_kind"]["unauthorised_access"] == 1
    assert summary["notified_subjects"] == SCANNED and summary["affected_subjects"] == SCANNED

    # Each notice shows in that subject's own access log.
    for sid in scene["ids"][:SCANNED]:
        r = client.get("/v1/subject/access-log", headers=direct_token(services, sid, "recipient"))
        assert r.status_code == 200, r.get_json()
        mine = [i for i in r.get_json()["items"] if i["action"] == "incident.notify"]
        assert len(mine) == 1 and mine[0]["purpose"] == "incident_notice" and mine[0]["fields"] == ["recipient.phone"]
    r = client.get("/v1/subject/access-log", headers=direct_token(services, scene["ids"][SCANNED], "recipient"))
    assert not [i for i in r.get_json()["items"] if i["action"] == "incident.notify"]

    got = client.get(f"/v1/incidents/{made['id']}", headers=scene["auditor"])
    assert got.status_code == 200, got.get_json()
    body = got.get_json()
    assert body["affected_subjects"] == SCANNED and body["notices"] == {"sent": SCANNED, "unreachable": 0,
                                                                        "destroyed": 0, "pending": 0}
    assert [e["action"] for e in body["timeline"]] == ["created", "notified", "notified"]
    assert client.post(f"/v1/incidents/{made['id']}/notify", headers=scene["auditor"]).status_code == 403

    report = client.get(f"/v1/incidents/{made['id']}/report", headers=scene["officer"])
    assert report.status_code == 200, report.get_json()
    rep = report.get_json()
    assert rep["affected_subjects"] == SCANNED and rep["cause"] == "账号凭证外泄"
    assert [c["code"] for c in rep["categories_of_data"]] == ["address"]  # what the scans touched
    for key in ("categories_of_data", "cause", "possible_harm", "remedies_taken", "what_individuals_can_do",
                "contact"):
        assert rep[key], key
    pdf = client.get(f"/v1/incidents/{made['id']}/report?format=pdf", headers=scene["officer"])
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    pdf_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "个人信息安全事件报告" in pdf_text and made["id"] in pdf_text and "账号凭证外泄" in pdf_text
    raw_json = report.get_data(as_text=True) + got.get_data(as_text=True)
    for name, phone, address in PEOPLE + [(SENDER["name"], SENDER["phone"], SENDER["address"])]:
        for secret in (name, phone, address):
            assert secret not in raw_json and secret not in pdf_text, secret


def test_a_legal_hold_by_incident_holds_its_shipments(client, services, scene):
    made = client.post("/v1/incidents", json=_incident(scene), headers=scene["officer"]).get_json()
    r = client.post("/v1/privacy/holds", json={"incident_id": made["id"], "reason": "公安调证 INC-1"},
                    headers=scene["officer"])
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["shipments"] == SCANNED and r.get_json()["incident_id"] == made["id"]
    r = client.post("/v1/privacy/holds", json={"incident_id": "inc_01J000000000000000000000ZZ", "reason": "x"},
                    headers=scene["officer"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "incident_id"


def test_a_drill_notifies_nobody(client, services, scene):
    body = _incident(scene, kind="drill", scope={"shipment_ids": scene["ids"][:2]})
    r = client.post("/v1/incidents", json=body, headers=scene["officer"])
    assert r.status_code == 201, r.get_json()
    made = r.get_json()
    assert made["affected_subjects"] == 4 and made["report_due_at"] is None  # both parties of two shipments
    r = client.post(f"/v1/incidents/{made['id']}/notify", headers=scene["officer"])
    assert r.status_code == 200 and r.get_json() == {"notified": 0}
    for _name, phone, _address in PEOPLE:
        assert _notices(services, phone) == []
    got = client.get(f"/v1/incidents/{made['id']}", headers=scene["officer"]).get_json()
    assert got["notices"]["pending"] == 4 and got["report_rule"] == "drill:not_reported"


def test_shipment_scope_counts_a_landline_as_unreachable(client, services, scene):
    body = _incident(scene, kind="leak", severity="general", scope={"shipment_ids": [scene["ids"][0]]})
    made = client.post("/v1/incidents", json=body, headers=scene["officer"]).get_json()
    assert made["affected_subjects"] == 2 and made["report_due_at"] is None
    r = client.post(f"/v1/incidents/{made['id']}/notify", headers=scene["officer"])
    assert r.get_json() == {"notified": 1}  # the recipient; the sender's phone is a landline
    got = client.get(f"/v1/incidents/{made['id']}", headers=scene["officer"]).get_json()
    assert got["notices"] == {"sent": 1, "unreachable": 1, "destroyed": 0, "pending": 0}
    assert len(_notices(services, PEOPLE[0][1])) == 1
    r = client.post(f"/v1/incidents/{made['id']}/timeline", json={"action": "reported_to_regulator", "note": "已报"},
                    headers=scene["officer"])
    assert r.status_code == 201 and r.get_json()["status"] == "reported" and r.get_json()["reported_at"]


@pytest.mark.parametrize(("change", "field"), [
    ({"title": ""}, "title"),
    ({"kind": "flood"}, "kind"),
    ({"severity": "huge"}, "severity"),
    ({"detected_at": "yesterday"}, "detected_at"),
    ({"detected_at": "2099-01-01T00:00:00Z"}, "detected_at"),
    ({"law_enforcement_contacted": "yes"}, "law_enforcement_contacted"),
    ({"data_categories": ["dna"]}, "data_categories[0]"),
    ({"surprise": 1}, "surprise"),
    ({"scope": {"actor": "root", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}}, "scope.actor"),
    ({"scope": {"to": "2026-01-02T00:00:00Z"}}, "scope.from"),
    ({"scope": {"from": "2026-01-02T00:00:00Z"}}, "scope.to"),
    ({"scope": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}, "scope.to"),
    ({"scope": {"shipment_ids": ["nope"]}}, "scope.shipment_ids[0]"),
    ({"scope": {"shipment_ids": ["shp_01J000000000000000000000ZZ"]}}, "scope.shipment_ids[0]"),
    ({"scope": {"shipment_ids": []}}, "scope.shipment_ids"),
])
def test_validation_names_the_field_and_writes_nothing(client, services, officers, change, field):
    scene = {"actor": "staff:usr_x", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    r = client.post("/v1/incidents", json=_incident(scene, **change), headers=officers["officer"])
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["error"]["field"] == field, r.get_json()
    with services.session_factory() as s:
        assert s.scalar(select(Incident.id)) is None


def test_unknown_incidents_are_404(client, officers):
    for bad in ("inc_01J000000000000000000000ZZ", "nope"):
        assert client.get(f"/v1/incidents/{bad}", headers=officers["auditor"]).status_code == 404
        assert client.post(f"/v1/incidents/{bad}/notify", headers=officers["officer"]).status_code == 404
        assert client.get(f"/v1/incidents/{bad}/report", headers=officers["officer"]).status_code == 404
        assert client.post(f"/v1/incidents/{bad}/timeline", json={"action": "note"},
                           headers=officers["officer"]).status_code == 404
    assert client.post("/v1/incidents", json={}, headers=officers["auditor"]).status_code == 403
    r = client.get("/v1/incidents?limit=5", headers=officers["auditor"])
    assert r.status_code == 200 and r.get_json() == {"items": [], "next_cursor": None}


@pytest.mark.skipif(BACKEND != "postgresql", reason="row locks: SQLite serialises writers anyway")
def test_two_notify_requests_at_once_send_each_notice_once(fresh_env):
    """Two officers (or a double click) notifying one incident at the same moment: the second waits for the
    first and then finds nobody left to notify; no subject gets the notice twice."""
    import threading

    from tests.conftest import make_merchant
    from waybill.incidents import domain

    env = fresh_env()
    svc = env.services()
    merchant = make_merchant(svc)
    r = env.app().test_client().post("/v1/shipments", json=shipment_body("INC-RACE"), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    officer = Principal("staff", make_staff(svc, "race_po", "privacy_officer").user.id, "privacy_officer")
    with svc.session_factory() as s:
        new = domain.NewIncident(title="并发通知", kind="leak", severity="major", detected_at=utcnow(),
                                 scope=domain.Scope(shipment_ids=[r.get_json()["id"]]))
        iid = domain.create(s, svc.codec, officer, new, report_hours=4).id
        s.commit()
    first = svc.session_factory()
    assert domain.notify(first, svc, officer, iid, contact="4000000000") >= 1
    result: list[int] = []

    def second() -> None:
        with svc.session_factory() as s:
            result.append(domain.notify(s, svc, officer, iid, contact="4000000000"))
            s.commit()

    worker = threading.Thread(target=second)
    worker.start()
    worker.join(timeout=2)
    waited = worker.is_alive()
    first.commit()
    first.close()
    worker.join(timeout=10)
    assert (waited, result) == (True, [0])
