"""The month's incident summary (for the monthly privacy report) and the report deadline rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from waybill.incidents import domain, month_summary
from waybill.models import utcnow
from waybill.permissions import Principal

OFFICER = Principal("staff", "usr_summary_po", "privacy_officer")


def _make(session, services, kind, severity, detected_at, now):
    data = domain.NewIncident(title="演练" if kind == "drill" else "事件", kind=kind, severity=severity,
                              detected_at=detected_at, scope=domain.Scope(actor="staff:usr_nobody",
                                                                          start=detected_at, end=detected_at))
    return domain.create(session, services.codec, OFFICER, data, report_hours=4, now=now)


def test_month_summary_counts_kinds_severities_drills_and_overdue_reports(session, services):
    now = utcnow()
    late = _make(session, services, "leak", "significant", now - timedelta(hours=10), now)  # due 6 h ago
    in_time = _make(session, services, "loss", "major", now - timedelta(hours=1), now)
    domain.record_action(session, services.codec, OFFICER, in_time.id, "reported_to_regulator", None, now=now)
    _make(session, services, "unauthorised_access", "general", now - timedelta(hours=20), now)
    _make(session, services, "drill", "significant", now - timedelta(hours=9), now)
    session.commit()
    got = month_summary(session, now - timedelta(days=1), now + timedelta(days=1))
    assert got == {"total": 3, "by_kind": {"leak": 1, "unauthorised_access": 1, "tamper": 0, "loss": 1},
                   "by_severity": {"general": 1, "significant": 1, "major": 1, "critical": 0}, "drills": 1,
                   "affected_subjects": 0, "notified_subjects": 0, "reports_overdue": 1}
    assert late.report_due_at == late.detected_at + timedelta(hours=4)
    # Another month: nothing.
    empty = month_summary(session, now - timedelta(days=60), now - timedelta(days=30))
    assert empty["total"] == 0 and empty["drills"] == 0 and empty["reports_overdue"] == 0


def test_the_deadline_rule_is_recorded_by_severity_and_hours():
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert domain.deadline("leak", "critical", at, 4) == (
        "cac_incident_reporting_2025-11-01:significant_and_above:4h", at + timedelta(hours=4))
    assert domain.deadline("leak", "significant", at, 2)[1] == at + timedelta(hours=2)
    assert domain.deadline("leak", "general", at, 4) == (domain.RULE_GENERAL, None)
    assert domain.deadline("drill", "critical", at, 4) == (domain.RULE_DRILL, None)
