"""The monthly privacy report: JSON counts of a seeded month (accesses made through HTTP), the PDF's headings and
charts with none of the test data's personal data in its text, role permissions and refused months."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pymupdf
import pytest
from sqlalchemy import select

from courier_api.models import StaffUser
from courier_api.reports.pdf import SUMMARY, TITLE
from courier_api.reports.period import CST, month_period
from courier_api.reports.sections import SECTIONS
from courier_api.subjects.models import SubjectRequest
from tests.conftest import RECIPIENT, SENDER
from tests.courier_api import bearer, login, make_partner, make_staff
from tests.courier_api.last_mile_helpers import STATION, assign, printed
from waybill.alerts.models import Alert
from waybill.ids import new_id
from waybill.models import AuditEvent, DestructionRecord, utcnow

USERNAMES = ("lm_sorter", "lm_disp", "lm_courier", "lm_courier2", "lm_disp_far", "lm_admin", "po_one", "po_two",
             "aud_one")
STAFF_PHONES = ("13700002222", "13700003333")


def _this_month() -> str:
    return utcnow().astimezone(CST).strftime("%Y-%m")


def _personal_data() -> list[str]:
    values = [RECIPIENT[k] for k in ("name", "phone", "address")] + [SENDER[k] for k in ("name", "phone", "address")]
    return [*values, RECIPIENT["phone"][-8:], *USERNAMES, *STAFF_PHONES]


@pytest.fixture
def seeded(client, services, merchant, field_crew, officers) -> dict[str, Any]:
    """A month with real accesses (scans through HTTP), a refusal, alerts, subjects' requests, destructions and
    partners whose agreements end soon."""
    shp, token = printed(client, merchant, field_crew["sorter"], "RP-1")
    other, other_token = printed(client, merchant, field_crew["sorter"], "RP-2")
    assert assign(client, field_crew["dispatcher"], shp["id"]).status_code == 201
    assert assign(client, field_crew["dispatcher"], other["id"]).status_code == 201
    for qr in (token, other_token, token):  # three accesses to personal data by lm_courier
        assert client.post("/v1/courier/scan", json={"token": qr}, headers=field_crew["courier"]).status_code == 200
    # lm_courier2 is of the same station but not assigned: refused, and audited as denied.
    assert client.post("/v1/courier/scan", json={"token": token},
                       headers=field_crew["courier2"]).status_code in (403, 404)
    period = month_period(_this_month(), utcnow())
    t0 = period.start + timedelta(minutes=1)
    with services.session_factory() as s:
        courier = s.scalar(select(StaffUser).where(StaffUser.username == "lm_courier"))
        assert courier is not None
        for rule, sev, took in (("scan_quota", "warning", timedelta(minutes=20)),
                                ("scan_quota", "warning", timedelta(hours=5)),
                                ("scan_quota", "warning", None), ("canary", "critical", timedelta(days=2))):
            s.add(Alert(id=new_id("alr"), rule=rule, severity=sev, actor=f"staff:{courier.id}", role="courier",
                        dedupe_key=new_id("dk"), count=3, first_at=t0, last_at=t0,
                        status="open" if took is None else "resolved",
                        resolved_at=None if took is None else t0 + took, resolved_by=None))
        for due, decided in ((timedelta(days=15), timedelta(days=3)), (timedelta(days=15), timedelta(days=20)),
                             (timedelta(seconds=30), None)):
            s.add(SubjectRequest(id=new_id("sjr"), shipment_id=shp["id"], party="recipient", type="complaint",
                                 status="received" if decided is None else "completed", received_at=t0,
                                 due_at=t0 + due, decided_at=None if decided is None else t0 + decided))
        s.add(DestructionRecord(id=new_id("dsr"), at=t0, reason="retention", method="crypto-shred", shipments=7,
                                key_ids=["ap-20260101"], actor="system:retention"))
        s.add(DestructionRecord(id=new_id("dsr"), at=t0, reason="subject_request", method="crypto-shred",
                                shipments=1, key_ids=[], actor="system:retention"))
        s.commit()
        courier_id = courier.id
    # The incident register: one real incident over the shipment (both its parties) and a drill.
    for kind in ("leak", "drill"):
        r = client.post("/v1/incidents", json={"title": "月报测试", "kind": kind, "detected_at": utcnow().isoformat(),
                                               "scope": {"shipment_ids": [shp["id"]]}}, headers=officers["officer"])
        assert r.status_code == 201, r.get_json()
    soon = (period.until.astimezone(CST).date() + timedelta(days=10)).isoformat()
    partner = make_partner(services, name="丰巢科技", kind="locker", expires=soon)
    make_partner(services, name="长期驿站", kind="station", expires="2099-12-31")
    return {"headers": {**field_crew, **officers}, "courier_id": courier_id, "partner": partner, "period": period}


def _expected_accesses(services: Any, period: Any) -> Counter[tuple[str, str, str | None]]:
    """(day, role, station) of every personal-data access in the month, counted event by event (the oracle)."""
    with services.session_factory() as s:
        stations = {f"staff:{u.id}": u.station for u in s.scalars(select(StaffUser))}
        events = s.scalars(select(AuditEvent).where(AuditEvent.at >= period.start, AuditEvent.at < period.end))
        return Counter((e.at.astimezone(CST).date().isoformat(), e.role, stations.get(e.actor))
                       for e in events if e.outcome == "ok" and e.fields)


def test_json_report_counts_the_month(client, services, seeded):
    h, period = seeded["headers"], seeded["period"]
    r = client.get(f"/v1/privacy/reports/{period.month}", headers=h["officer"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["month"] == period.month and len(body["accesses"]["by_day"]) == len(period.days)
    # Accesses: the report's rows are the event-by-event count, and lm_courier's three scans are at its station.
    got = Counter({(row["day"], row["role"], row["station"]): row["count"] for row in body["accesses"]["rows"]})
    assert got == _expected_accesses(services, period)
    courier_rows = [row for row in body["accesses"]["rows"] if row["role"] == "courier"]
    assert sum(row["count"] for row in courier_rows) == 3 and {row["station"] for row in courier_rows} == {STATION}
    assert body["accesses"]["total"] == sum(got.values())
    assert sum(c["count"] for c in body["accesses"]["by_day"]) == body["accesses"]["total"]
    per_station: Counter[str] = Counter()
    for (_, _, station), n in got.items():
        per_station[station or "none"] += n
    assert {c["key"]: c["count"] for c in body["accesses"]["by_station"]} == per_station
    assert per_station[STATION] >= 3  # the courier's scans (and the sorter's prints) at the station
    assert body["accesses"]["top_actors"] is None  # a privacy officer sees no actors
    # Refusals: lm_courier2's scan.
    assert {"key": "courier.scan", "count": 1} in body["refusals"]["by_action"]
    # Alerts: three scan_quota (20 min, 5 h, open), one canary resolved after two days.
    rules = {(a["rule"], a["severity"]): a for a in body["alerts"]["by_rule"]}
    quota = rules[("scan_quota", "warning")]
    assert (quota["alerts"], quota["fires"], quota["resolved"], quota["open"]) == (3, 9, 2, 1)
    assert (quota["within_1h"], quota["within_24h"], quota["later"]) == (1, 1, 0)
    assert quota["mean_resolve_seconds"] == pytest.approx((20 * 60 + 5 * 3600) / 2, abs=1)
    canary = rules[("canary", "critical")]
    assert (canary["alerts"], canary["later"], canary["within_1h"]) == (1, 1, 0)
    assert (body["alerts"]["total"], body["alerts"]["resolved"]) == (4, 3)
    # Subjects' requests: one answered in time, one late, one overdue and open.
    (complaints,) = body["subject_requests"]["by_type"]
    assert complaints == {"type": "complaint", "received": 3, "answered": 2, "answered_in_time": 1,
                          "answered_late": 1, "open_overdue": 1, "open_pending": 0}
    assert body["destructions"] == {"records": 2, "shipments": 8, "by_reason": [
        {"reason": "retention", "records": 1, "shipments": 7},
        {"reason": "subject_request", "records": 1, "shipments": 1}]}
    incidents = body["incidents"]
    assert (incidents["total"], incidents["drills"], incidents["affected_subjects"]) == (1, 1, 2)
    assert {"key": "leak", "count": 1} in incidents["by_kind"]
    assert {"key": "significant", "count": 1} in incidents["by_severity"]  # the default severity
    assert [p["id"] for p in body["partners_expiring"]["items"]] == [seeded["partner"]]
    assert body["partners_expiring"]["items"][0]["expired"] is False
    text = r.get_data(as_text=True)
    for value in _personal_data():
        assert value not in text, value
    assert seeded["courier_id"] not in text


def test_auditor_sees_actors_as_ids_never_names(client, seeded):
    h, month = seeded["headers"], seeded["period"].month
    body = client.get(f"/v1/privacy/reports/{month}", headers=h["auditor"]).get_json()
    assert {"actor": f"staff:{seeded['courier_id']}", "count": 3} in body["accesses"]["top_actors"]
    text = str(body)
    assert not any(value in text for value in _personal_data())


def _pdf_text(data: bytes) -> str:
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        return "\n".join(page.get_text() for page in doc)


@pytest.mark.parametrize("who", ["officer", "auditor"])
def test_pdf_has_its_headings_and_no_personal_data(client, seeded, who):
    h, month = seeded["headers"], seeded["period"].month
    r = client.get(f"/v1/privacy/reports/{month}?format=pdf", headers=h[who])
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data.startswith(b"%PDF")
    text = _pdf_text(r.data)
    for heading in (f"{TITLE} {month}", SUMMARY, *(section.title for section in SECTIONS)):
        assert heading in text, heading
    assert "丰巢科技" in text and "个人信息访问" in text
    for value in _personal_data():
        assert value not in text, value
    # Actors as ids in the auditor's report only.
    assert (f"staff:{seeded['courier_id']}" in text) == (who == "auditor")
    with pymupdf.open(stream=r.data, filetype="pdf") as doc:
        assert any(page.get_drawings() for page in doc)  # the charts are vector drawings


def test_an_empty_past_month_renders(client, officers):
    r = client.get("/v1/privacy/reports/2025-02", headers=officers["officer"])
    body = r.get_json()
    assert r.status_code == 200 and body["complete"] is True and body["accesses"]["total"] == 0
    assert len(body["accesses"]["by_day"]) == 28 and body["accesses"]["by_day"][0]["key"] == "2025-02-01"
    pdf = client.get("/v1/privacy/reports/2025-02?format=pdf", headers=officers["officer"])
    assert pdf.status_code == 200 and "2025-02" in _pdf_text(pdf.data)


def _next_month() -> str:
    now = utcnow().astimezone(CST)
    return f"{now.year + now.month // 12}-{now.month % 12 + 1:02d}"


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/privacy/reports/2026-13", "month"), ("/v1/privacy/reports/abc", "month"),
    ("/v1/privacy/reports/2026-1", "month"), ("/v1/privacy/reports/2026-00", "month"),
    ("/v1/privacy/reports/" + "9" * 500, "month"), ("/v1/privacy/reports/2026-05?format=xml", "format"),
    ("/v1/privacy/reports/2026-05?limit=5", "limit"), ("NEXT", "month")])
def test_bad_months_are_refused_naming_the_field(client, officers, path, field):
    if path == "NEXT":
        path = f"/v1/privacy/reports/{_next_month()}"
    r = client.get(path, headers=officers["officer"])
    assert r.status_code == 422 and r.get_json()["error"]["field"] == field, r.get_json()


def test_only_privacy_officers_and_auditors_read_it(client, services, officers):
    month = _this_month()
    assert client.get(f"/v1/privacy/reports/{month}").status_code == 401
    for name, role, station in (("rp_courier", "courier", STATION), ("rp_admin", "admin", None),
                                ("rp_disp", "dispatcher", STATION), ("rp_sorter", "sorter", STATION)):
        new = make_staff(services, name, role, station)
        headers = bearer(login(client, new).get_json()["access_token"])
        assert client.get(f"/v1/privacy/reports/{month}", headers=headers).status_code == 403
        assert client.get(f"/v1/privacy/reports/{month}?format=pdf", headers=headers).status_code == 403
    for who in ("officer", "auditor"):
        assert client.get(f"/v1/privacy/reports/{month}", headers=officers[who]).status_code == 200


def test_the_read_is_audited_without_personal_data(client, services, officers):
    month = _this_month()
    assert client.get(f"/v1/privacy/reports/{month}?format=pdf", headers=officers["auditor"]).status_code == 200
    with services.session_factory() as s:
        ev = s.scalars(select(AuditEvent).where(AuditEvent.action == "privacy_report.read")
                       .order_by(AuditEvent.seq.desc())).first()
    assert ev is not None and ev.object_id == month and ev.fields == [] and ev.purpose == "format=pdf"


def test_the_month_is_the_shanghai_calendar_month():
    p = month_period("2026-03", datetime(2026, 12, 1, tzinfo=CST))
    assert p.start == datetime(2026, 2, 28, 16, 0, tzinfo=UTC) and len(p.days) == 31
    assert p.start.utcoffset() == timedelta(0) and p.end == datetime(2026, 4, 1, tzinfo=CST)
    assert p.day_starts[1] - p.day_starts[0] == timedelta(days=1) and p.complete
    assert p.day_starts[-1].astimezone(CST) == datetime(2026, 3, 31, tzinfo=CST)
