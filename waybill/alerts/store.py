"""The alert store: filled from ``alert.*`` audit events, deduplicated per burst, critical ones suspending.

Every alert starts as an audit event (:func:`fire` records ``alert.<rule>``; earlier code records them
directly). When the transaction commits, the audit append hands its events to :func:`ingest` before it
chains them (``waybill.audit.install(..., alert_sink=ingest)``), so each alert is stored in the very transaction
of the event that raised it, and a durable event replayed after a rollback raises its alert too.

Deduplication: an alert's ``dedupe_key`` is ``rule|actor|object``; while an alert with that key is open, firing
again adds one to its ``count`` (one upsert on a partial unique index, safe across workers) instead of a new row.
A new alert is handed to the outbox (topic ``alerts.deliver``: the logs and the security endpoint), never sent
from the request. A new ``critical`` alert suspends the acting staff account at once (``account.suspend``, audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, exists, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from waybill import audit, outbox
from waybill.alerts.models import AccountSuspension, Alert
from waybill.alerts.rules import RULES, rule_for_action
from waybill.ids import new_id
from waybill.models import utcnow
from waybill.permissions import Principal

DELIVER_TOPIC = "alerts.deliver"
_ALERTS = cast(Table, Alert.__table__)


@dataclass(frozen=True, slots=True)
class Fired:
    """What one ``alert.*`` event did to the store: which alert, its count now, and whether it is new."""

    alert_id: str
    count: int
    new: bool


def fire(session: Session, principal: Principal | None, rule: str, *, object_type: str | None = None,
         object_id: str | None = None, detail: str | None = None) -> None:
    """Raise ``rule`` for ``principal`` (and an object, which also separates bursts): an ``alert.<rule>`` audit
    event, durable (the alert outlives a refused request). ``detail`` is a short note without personal data."""
    if rule not in RULES:
        raise KeyError(rule)
    audit.record(session, principal, f"alert.{rule}", object_type=object_type, object_id=object_id,
                 outcome="alert", purpose=detail, durable=True)


def dedupe_key(rule: str, actor: str, object_type: str | None, object_id: str | None) -> str:
    return f"{rule}|{actor}|{object_type or ''}:{object_id or ''}"[:300]


def _upsert(session: Session, ev: audit.PendingEvent, rule: str, severity: str) -> Fired:
    dialect = session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert  # the two supported backends
    key = dedupe_key(rule, ev.actor, ev.object_type, ev.object_id)
    new_id_value = new_id("alr")
    stmt = insert(_ALERTS).values(
        id=new_id_value, rule=rule, severity=severity, actor=ev.actor, role=ev.role, object_type=ev.object_type,
        object_id=ev.object_id, detail=ev.purpose, dedupe_key=key, count=1, first_at=ev.at, last_at=ev.at,
        status="open")
    # The partial index's predicate as a literal, not a bound parameter: psycopg prepares a statement run five
    # times on a connection, and PostgreSQL cannot match a generic plan's "status = $1" to the index (the sixth
    # alert of a connection failed: "no unique or exclusion constraint matching the ON CONFLICT specification").
    stmt = stmt.on_conflict_do_update(
        index_elements=[_ALERTS.c.dedupe_key], index_where=text("status = 'open'"),
        set_={"count": _ALERTS.c.count + 1, "last_at": stmt.excluded.last_at})
    alert_id, count = session.execute(stmt.returning(_ALERTS.c.id, _ALERTS.c.count)).one()
    return Fired(alert_id=alert_id, count=count, new=alert_id == new_id_value)


def ingest(session: Session, events: Sequence[audit.PendingEvent]) -> list[audit.PendingEvent]:
    """Store the alerts of ``events`` (the audit append's hook); returns the audit events this adds (suspensions)."""
    added: list[audit.PendingEvent] = []
    for ev in events:
        rule = rule_for_action(ev.action)
        if rule is None:
            continue
        fired = _upsert(session, ev, rule.id, rule.severity)
        if fired.new:
            outbox.enqueue(session, DELIVER_TOPIC, {"alert_id": fired.alert_id})
        # Not only for a new alert: after `users enable` the alert may still be open (nobody resolved it), and the
        # next firing, a count on that alert, must suspend the account again.
        if rule.suspends and ev.actor.startswith("staff:") and not is_suspended(session, ev.actor):
            session.add(AccountSuspension(id=new_id("sus"), actor=ev.actor, alert_id=fired.alert_id, rule=rule.id,
                                          at=ev.at))
            added.append(audit.PendingEvent(
                at=ev.at, actor="system:alerts", role="system", action="account.suspend", object_type="account",
                object_id=ev.actor, purpose=f"alert={fired.alert_id} rule={rule.id}", fields=[], outcome="ok",
                client_addr=ev.client_addr, request_id=ev.request_id))
    if added:
        session.flush()
    return added


def suspended_clause(actor: Any) -> Any:
    """A SQL condition: ``actor`` (a column or expression) has a suspension not yet lifted."""
    return exists().where(AccountSuspension.actor == actor, AccountSuspension.lifted_at.is_(None))


def is_suspended(session: Session, actor: str) -> bool:
    """Whether ``actor`` (``staff:<id>``) is suspended now."""
    return bool(session.scalar(select(suspended_clause(actor))))


def lift(session: Session, principal: Principal, actor: str, *, now: datetime | None = None) -> int:
    """Lift every open suspension of ``actor``; audited (``account.unsuspend``); returns how many were lifted."""
    now = now or utcnow()
    result = session.execute(update(AccountSuspension)
                             .where(AccountSuspension.actor == actor, AccountSuspension.lifted_at.is_(None))
                             .values(lifted_at=now, lifted_by=principal.actor)
                             .execution_options(synchronize_session=False))
    lifted = int(getattr(result, "rowcount", 0) or 0)
    if lifted:
        audit.record(session, principal, "account.unsuspend", object_type="account", object_id=actor)
    return lifted
