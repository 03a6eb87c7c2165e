"""The monthly privacy report (内部监督检查): what happened to personal data in one Asia/Shanghai calendar month.

Counts only: accesses by role, station and day, refusals, alerts and how fast they were resolved, subjects'
requests answered in time, destructions, partners' agreements about to end. No personal data and no staff
names; an auditor (who reads the audit log anyway) also sees the most active actors as ids, a privacy officer
does not. :func:`monthly_report` builds the JSON answer; :func:`courier_api.reports.pdf.render` draws it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from courier_api.reports.period import month_period
from courier_api.reports.schemas import MonthlyReportOut
from courier_api.reports.sections import SECTIONS, ReportContext
from waybill import audit
from waybill.models import utcnow
from waybill.permissions import Permission, Principal

__all__ = ["SECTIONS", "MonthlyReportOut", "monthly_report"]
ACTION = "privacy_report.read"


def monthly_report(session: Session, principal: Principal, month: str, *, fmt: str = "json",
                   now: datetime | None = None) -> MonthlyReportOut:
    """The report of ``month`` (``YYYY-MM``); the read is audited (it names no personal data)."""
    principal.require(Permission.PRIVACY_REPORT_READ)
    now = now or utcnow()
    period = month_period(month, now)
    ctx = ReportContext(session=session, period=period, now=now,
                        show_actors=principal.can(Permission.AUDIT_READ))
    parts = {section.key: section.build(ctx) for section in SECTIONS}
    audit.record(session, principal, ACTION, object_type="privacy_report", object_id=month, purpose=f"format={fmt}")
    return MonthlyReportOut(month=month, start=period.start, end=period.end, until=period.until,
                            complete=period.complete, generated_at=now, **parts)
