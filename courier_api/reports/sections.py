"""The report's sections: each a small builder of one part of the answer from set-based queries (GROUP BY).

A section is ``Section(key, title, build)``: ``build(ctx)`` answers the section's model, ``key`` is its field of
:class:`~courier_api.reports.schemas.MonthlyReportOut`, ``title`` its heading in the PDF. The audit-event
queries read the month's range of ``audit_events.at`` (indexed: migration 0027) and aggregate in the database;
what comes back is a row per (day, role, station) or per rule, type, reason, never per event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Text, and_, case, cast, func, select
from sqlalchemy.orm import Session

from courier_api.models import Partner, StaffUser
from courier_api.reports.period import CST, Period
from courier_api.reports.schemas import (
    AccessesOut,
    AccessRow,
    ActorCount,
    AlertRuleOut,
    AlertsOut,
    Count,
    DestructionReasonOut,
    DestructionsOut,
    ExpiringPartnerOut,
    IncidentsOut,
    PartnersOut,
    RefusalsOut,
    SubjectRequestsOut,
    SubjectTypeOut,
)
from courier_api.subjects.models import SubjectRequest
from waybill import incidents as incident_register
from waybill.alerts.models import Alert
from waybill.models import AuditEvent, DestructionRecord

#: Partners whose agreement ends within this many days after the report's last day are listed.
PARTNER_HORIZON_DAYS = 30
TOP_ACTORS = 10
HOUR, DAY = 3600, 86400
#: The by-station key of actors without a station (merchants, subjects, the system, office staff).
NO_STATION = "none"
STAFF_PREFIX = "staff:"


@dataclass(frozen=True, slots=True)
class ReportContext:
    session: Session
    period: Period
    now: datetime
    # Whether actors may appear as ids (the auditor's view: they read the same ids in the audit log).
    show_actors: bool


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    build: Callable[[ReportContext], BaseModel]


def _in_month(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def _day_index(column: Any, period: Period) -> ColumnElement[int]:
    """The month's day (0-based, Asia/Shanghai) of ``column``, as one CASE over the day boundaries (portable,
    and no function wrapped around the indexed column)."""
    return case(*((column < start, i) for i, start in enumerate(period.day_starts[1:])),
                else_=len(period.days) - 1)


def _epoch(session: Session, column: Any) -> ColumnElement[Any]:
    """Seconds since 1970 of a timestamp column, on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _counts(pairs: Iterable[tuple[str, int]]) -> list[Count]:
    total: Counter[str] = Counter()
    for key, n in pairs:
        total[key] += n
    return [Count(key=k, count=n) for k, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def _by_day(period: Period, pairs: Iterable[tuple[int, int]]) -> list[Count]:
    per_day = [0] * len(period.days)
    for index, n in pairs:
        per_day[index] += n
    return [Count(key=day.isoformat(), count=n) for day, n in zip(period.days, per_day, strict=True)]


def accesses(ctx: ReportContext) -> AccessesOut:
    """Personal-data accesses (events naming fields, outcome ok) per day, role and the actor's station."""
    p = ctx.period
    touched = and_(_in_month(AuditEvent.at, p), AuditEvent.outcome == "ok", cast(AuditEvent.fields, Text) != "[]")
    # Counted per (day, role, actor) first, then each actor's station joined to those counts (an index lookup
    # of the staff id behind "staff:"): only staff have a station, and the join never sees an event.
    day = _day_index(AuditEvent.at, p).label("day")
    per_actor = (select(day, AuditEvent.role, AuditEvent.actor, func.count().label("n"))
                 .where(touched).group_by(day, AuditEvent.role, AuditEvent.actor).subquery())
    staff_of = and_(per_actor.c.actor.startswith(STAFF_PREFIX),
                    StaffUser.id == func.substr(per_actor.c.actor, len(STAFF_PREFIX) + 1))
    stmt = (select(per_actor.c.day, per_actor.c.role, StaffUser.station, func.sum(per_actor.c.n))
            .select_from(per_actor).outerjoin(StaffUser, staff_of)
            .group_by(per_actor.c.day, per_actor.c.role, StaffUser.station))
    rows = [(int(d), str(role), st, int(n)) for d, role, st, n in ctx.session.execute(stmt)]
    rows.sort(key=lambda r: (r[0], r[1], r[2] or ""))
    top: list[ActorCount] | None = None
    if ctx.show_actors:
        n_events = func.count().label("n")
        top_stmt = (select(AuditEvent.actor, n_events).where(touched).group_by(AuditEvent.actor)
                    .order_by(n_events.desc(), AuditEvent.actor).limit(TOP_ACTORS))
        top = [ActorCount(actor=a, count=int(n)) for a, n in ctx.session.execute(top_stmt)]
    return AccessesOut(
        total=sum(r[3] for r in rows),
        by_role=_counts((r[1], r[3]) for r in rows),
        by_station=_counts((r[2] or NO_STATION, r[3]) for r in rows),
        by_day=_by_day(p, ((r[0], r[3]) for r in rows)),
        rows=[AccessRow(day=p.days[d], role=role, station=st, count=n) for d, role, st, n in rows],
        top_actors=top)


def refusals(ctx: ReportContext) -> RefusalsOut:
    """Refused attempts (outcome denied) per action, role and day."""
    p = ctx.period
    day = _day_index(AuditEvent.at, p).label("day")
    stmt = (select(day, AuditEvent.action, AuditEvent.role, func.count())
            .where(_in_month(AuditEvent.at, p), AuditEvent.outcome == "denied")
            .group_by(day, AuditEvent.action, AuditEvent.role))
    rows = [(int(d), str(action), str(role), int(n)) for d, action, role, n in ctx.session.execute(stmt)]
    return RefusalsOut(total=sum(r[3] for r in rows), by_action=_counts((r[1], r[3]) for r in rows),
                       by_role=_counts((r[2], r[3]) for r in rows), by_day=_by_day(p, ((r[0], r[3]) for r in rows)))


def alerts(ctx: ReportContext) -> AlertsOut:
    """Alerts first raised in the month, per rule: how many, how often fired, how fast resolved."""
    s = ctx.session
    took = _epoch(s, Alert.resolved_at) - _epoch(s, Alert.first_at)
    resolved = Alert.resolved_at.is_not(None)

    def within(low: float | None, high: float | None) -> Any:
        cond: list[ColumnElement[bool]] = [resolved]
        if low is not None:
            cond.append(took > low)
        if high is not None:
            cond.append(took <= high)
        return func.sum(case((and_(*cond), 1), else_=0))

    stmt = (select(Alert.rule, Alert.severity, func.count(), func.sum(Alert.count),
                   func.sum(case((resolved, 1), else_=0)), within(None, HOUR), within(HOUR, DAY),
                   within(DAY, None), func.avg(case((resolved, took), else_=None)))
            .where(_in_month(Alert.first_at, ctx.period))
            .group_by(Alert.rule, Alert.severity).order_by(Alert.rule, Alert.severity))
    items = [AlertRuleOut(rule=rule, severity=sev, alerts=int(n), fires=int(fires or 0), resolved=int(res or 0),
                          open=int(n) - int(res or 0), within_1h=int(h or 0), within_24h=int(d or 0),
                          later=int(late or 0), mean_resolve_seconds=None if mean is None else round(float(mean), 1))
             for rule, sev, n, fires, res, h, d, late, mean in s.execute(stmt)]
    return AlertsOut(total=sum(i.alerts for i in items), resolved=sum(i.resolved for i in items), by_rule=items)


def subject_requests(ctx: ReportContext) -> SubjectRequestsOut:
    """Subjects' requests received in the month, per type; answered by their due date or not (as of now)."""
    decided = SubjectRequest.decided_at.is_not(None)
    undecided = SubjectRequest.decided_at.is_(None)

    def n(cond: ColumnElement[bool]) -> Any:
        return func.sum(case((cond, 1), else_=0))

    stmt = (select(SubjectRequest.type, func.count(), n(decided),
                   n(and_(decided, SubjectRequest.decided_at <= SubjectRequest.due_at)),
                   n(and_(decided, SubjectRequest.decided_at > SubjectRequest.due_at)),
                   n(and_(undecided, SubjectRequest.due_at < ctx.now)),
                   n(and_(undecided, SubjectRequest.due_at >= ctx.now)))
            .where(_in_month(SubjectRequest.received_at, ctx.period))
            .group_by(SubjectRequest.type).order_by(SubjectRequest.type))
    items = [SubjectTypeOut(type=t, received=int(total), answered=int(a or 0), answered_in_time=int(ok or 0),
                            answered_late=int(late or 0), open_overdue=int(over or 0), open_pending=int(pend or 0))
             for t, total, a, ok, late, over, pend in ctx.session.execute(stmt)]
    return SubjectRequestsOut(received=sum(i.received for i in items), answered=sum(i.answered for i in items),
                              answered_in_time=sum(i.answered_in_time for i in items), by_type=items)


def incidents(ctx: ReportContext) -> IncidentsOut:
    """The incident register's month (drills apart: they notify nobody)."""
    found = incident_register.month_summary(ctx.session, ctx.period.start, ctx.period.end)
    return IncidentsOut(
        total=found["total"], drills=found["drills"], affected_subjects=found["affected_subjects"],
        notified_subjects=found["notified_subjects"], reports_overdue=found["reports_overdue"],
        by_kind=[Count(key=k, count=n) for k, n in found["by_kind"].items()],
        by_severity=[Count(key=k, count=n) for k, n in found["by_severity"].items()])


def destructions(ctx: ReportContext) -> DestructionsOut:
    """Destruction records of the month, per reason."""
    stmt = (select(DestructionRecord.reason, func.count(), func.sum(DestructionRecord.shipments))
            .where(_in_month(DestructionRecord.at, ctx.period))
            .group_by(DestructionRecord.reason).order_by(DestructionRecord.reason))
    items = [DestructionReasonOut(reason=r, records=int(n), shipments=int(shipments or 0))
             for r, n, shipments in ctx.session.execute(stmt)]
    return DestructionsOut(records=sum(i.records for i in items), shipments=sum(i.shipments for i in items),
                           by_reason=items)


def _last_day(period: Period) -> date:
    return (period.until - timedelta(microseconds=1)).astimezone(CST).date()


def partners_expiring(ctx: ReportContext) -> PartnersOut:
    """Partners whose agreement ended in the month or ends within the horizon after its last reported day."""
    last = _last_day(ctx.period)
    today = ctx.now.astimezone(CST).date()
    stmt = (select(Partner).where(Partner.agreement_expires >= ctx.period.days[0],
                                  Partner.agreement_expires <= last + timedelta(days=PARTNER_HORIZON_DAYS))
            .order_by(Partner.agreement_expires, Partner.id))
    return PartnersOut(horizon_days=PARTNER_HORIZON_DAYS, items=[
        ExpiringPartnerOut(id=p.id, name=p.name, kind=p.kind, agreement_ref=p.agreement_ref,
                           agreement_expires=p.agreement_expires, expired=p.agreement_expires < today)
        for p in ctx.session.scalars(stmt)])


# The report, in order. The incident register's section (``waybill.incidents.month_summary``) goes between
# ``subject_requests`` and ``destructions`` when it is merged: a builder here, a field on MonthlyReportOut and
# a drawer in courier_api/reports/pdf.py (README "Monthly privacy report").
SECTIONS: tuple[Section, ...] = (
    Section("accesses", "个人信息访问", accesses),
    Section("refusals", "被拒绝的访问", refusals),
    Section("alerts", "告警与处置时效", alerts),
    Section("subject_requests", "个人信息主体请求", subject_requests),
    Section("incidents", "安全事件与应急演练", incidents),
    Section("destructions", "个人信息销毁", destructions),
    Section("partners_expiring", "即将到期的合作方协议", partners_expiring),
)
