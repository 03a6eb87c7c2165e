"""The audit log: every read or write of personal data, and every denied attempt.

Domain code calls :func:`record`; the events are appended to the hash chain when the session
commits (a ``before_commit`` hook), so they are written in the same transaction as the access
they describe and the chain's lock is held only for the append itself. Events marked
``durable`` (denied attempts, failures) are written again in their own transaction when the
request's transaction is rolled back, so a refused attempt leaves a trace too.

Each event's hash is ``HMAC(audit key, previous hash || canonical event)``; keyed, so someone
with write access to the database cannot recompute a chain after editing it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, LargeBinary, Table, bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import Principal

_PENDING = "audit_pending"
_APPENDED = "audit_appended"
KEY_INFO = "audit_key"
CONTEXT_INFO = "audit_context"
OBSERVER_INFO = "audit_observer"
SINK_INFO = "audit_alert_sink"

#: Told ``(action, outcome)`` of each event once the transaction that appended them has committed (metrics).
AppendObserver = Callable[[list[tuple[str, str]]], None]
#: Given a transaction's events when one of them is an ``alert.*`` event, before they are chained; stores the
#: alerts (``waybill.alerts.store.ingest``) and returns events to chain as well (an automatic suspension's).
AlertSink = Callable[[Session, list["PendingEvent"]], list["PendingEvent"]]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Where a request came from; set by the web layer or CLI on the session."""

    request_id: str | None = None
    client_addr: str | None = None


@dataclass(slots=True)
class PendingEvent:
    at: datetime
    actor: str
    role: str
    action: str
    object_type: str | None
    object_id: str | None
    purpose: str | None
    fields: list[str]
    outcome: str
    client_addr: str | None
    request_id: str | None
    durable: bool = False


def record(session: Session, principal: Principal | None, action: str, *, object_type: str | None = None,
           object_id: str | None = None, fields: Iterable[str] = (), outcome: str = "ok",
           purpose: str | None = None, durable: bool = False) -> None:
    """Queue an audit event on ``session``; it is chained and written when the session commits.

    ``fields`` names the personal-data fields touched (``recipient.phone``), never their values.
    """
    ctx: AuditContext = session.info.get(CONTEXT_INFO) or AuditContext()
    session.info.setdefault(_PENDING, []).append(PendingEvent(
        at=utcnow(),
        actor=principal.actor if principal else "anonymous",
        role=principal.role if principal else "anonymous",
        action=action, object_type=object_type, object_id=object_id, purpose=purpose,
        fields=sorted(fields), outcome=outcome,
        client_addr=ctx.client_addr, request_id=ctx.request_id, durable=durable,
    ))


def take_durable(session: Session) -> list[PendingEvent]:
    """Remove and return the queued events that must survive a rollback; the others stay queued."""
    pending: list[PendingEvent] = session.info.get(_PENDING, [])
    session.info[_PENDING] = [e for e in pending if not e.durable]
    return [e for e in pending if e.durable]


def requeue(session: Session, events: Sequence[PendingEvent]) -> None:
    session.info.setdefault(_PENDING, []).extend(events)


def _canonical(seq: int, ev: AuditEvent | PendingEvent) -> bytes:
    doc: list[Any] = [seq, ev.at.isoformat(), ev.actor, ev.role, ev.action, ev.object_type,
                      ev.object_id, ev.purpose, list(ev.fields), ev.outcome, ev.client_addr, ev.request_id]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def chain_hash(key: bytes, prev: bytes, seq: int, ev: AuditEvent | PendingEvent) -> bytes:
    return hmac.new(key, bytes(prev) + _canonical(seq, ev), hashlib.sha256).digest()


# The append's statements, built once: building and cache-keying them per request cost more CPU
# than the rest of the append. Parameter names never equal a column name of either table, so
# executing with a parameter dict cannot add columns to the statements (nor to the CTE's UPDATE).
# (The mapped classes' __table__ is typed as a FromClause; it is the Table.)
_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
_RESERVE = (update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + bindparam("n_events", type_=BigInteger))
            .returning(_HEAD.c.seq, _HEAD.c.hash))
_SET_TIP = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("tip_hash", type_=LargeBinary))
# One event plus the new tip in one statement (a data-modifying CTE; PostgreSQL only).
_APPEND_ONE = (insert(_EVENTS).values({c.name: bindparam(f"ev_{c.name}", type_=c.type) for c in _EVENTS.c})
               .add_cte(_SET_TIP.cte("new_tip")))


def _append(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    key: bytes = session.info[KEY_INFO]
    # Write the transaction's own changes first, so the head row is always the last lock taken.
    session.flush()
    sink: AlertSink | None = session.info.get(SINK_INFO)
    if sink is not None and any(ev.action.startswith("alert.") for ev in pending):
        pending.extend(sink(session, pending))  # the alert rows join this transaction, before the head's lock
    conn = session.connection()
    # One statement locks the head row (serialising appenders on PostgreSQL; SQLite is serialised
    # already by BEGIN IMMEDIATE), reserves the sequence numbers and reads the tip's hash. Core, not
    # the ORM: a head cached earlier in this session must never be trusted.
    last, prev = conn.execute(_RESERVE, {"n_events": len(pending)}).one()
    seq, prev = last - len(pending), bytes(prev)
    rows = []
    for ev in pending:
        seq += 1
        digest = chain_hash(key, prev, seq, ev)
        rows.append({
            "seq": seq, "at": ev.at, "actor": ev.actor, "role": ev.role, "action": ev.action,
            "object_type": ev.object_type, "object_id": ev.object_id, "purpose": ev.purpose,
            "fields": ev.fields, "outcome": ev.outcome, "client_addr": ev.client_addr,
            "request_id": ev.request_id, "prev_hash": prev, "hash": digest,
        })
        prev = digest
    session.info.setdefault(_APPENDED, []).extend((ev.action, ev.outcome) for ev in pending)
    if conn.dialect.name == "postgresql" and len(rows) == 1:
        # The usual case, one event: the event and the new tip in one round trip, so the head row's
        # lock, which every appender waits for, is held one round trip less.
        conn.execute(_APPEND_ONE, {**{f"ev_{k}": v for k, v in rows[0].items()}, "tip_hash": prev})
    else:
        conn.execute(insert(_EVENTS), rows)
        conn.execute(_SET_TIP, {"tip_hash": prev})


def install(factory: sessionmaker[Session], audit_key: bytes, observer: AppendObserver | None = None,
            alert_sink: AlertSink | None = None) -> None:
    """Give sessions from ``factory`` the chain key and the append-on-commit hook (and an observer of appends,
    and the alert store's sink)."""
    info = factory.kw.setdefault("info", {})
    info[KEY_INFO] = audit_key
    info[OBSERVER_INFO] = observer
    info[SINK_INFO] = alert_sink

    @event.listens_for(factory, "before_commit")
    def _before_commit(session: Session) -> None:
        _append(session)

    if not event.contains(factory, "after_commit", _after_commit):
        event.listen(factory, "after_commit", _after_commit)
        event.listen(factory, "after_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    appended: list[tuple[str, str]] = session.info.pop(_APPENDED, [])
    observer: AppendObserver | None = session.info.get(OBSERVER_INFO)
    if appended and observer is not None:
        observer(appended)


def _after_rollback(session: Session) -> None:
    session.info.pop(_APPENDED, None)  # rolled back: those events were never appended



def list_events(session: Session, principal: Principal, *, limit: int, after: int | None = None,
                action: str | None = None, actor: str | None = None) -> tuple[list[AuditEvent], str | None]:
    """Events in chain order for auditors (they hold no personal data); the read is itself audited."""
    from waybill.permissions import Permission

    principal.require(Permission.AUDIT_READ)
    stmt = select(AuditEvent).order_by(AuditEvent.seq).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(AuditEvent.seq > after)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    # Which filters were used, not their text: a filter value is free input and may hold anything.
    record(session, principal, "audit.read",
           purpose=f"filters: action={'yes' if action else 'no'} actor={'yes' if actor else 'no'}")
    return rows, str(rows[-1].seq) if more and rows else None


@dataclass
class VerifyResult:
    ok: bool
    events: int
    head_seq: int
    first_bad: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "head_seq": self.head_seq, "first_bad": self.first_bad}


#: Where :func:`verify` reads: a session factory (each read a short transaction of its own, the way to run it
#: for real) or one open session (the caller's transaction; tests, or a caller already inside one).
VerifySource = Session | Callable[[], Session]


@contextmanager
def _reading(source: VerifySource) -> Iterator[Session]:
    """One short read: a fresh session closed (its transaction ended) at once, or the caller's own session."""
    if isinstance(source, Session):
        yield source
        source.expunge_all()  # a long walk must not keep every event it has seen in the identity map
        return
    with source() as session:
        yield session


def verify(source: VerifySource, key: bytes, *, batch: int = 2000,
           after_chunk: Callable[[int], None] | None = None) -> VerifyResult:
    """Walk the chain in sequence order; report the first edited, deleted, inserted or moved event.

    The head (seq, hash) is read first, in a read of its own, and the walk stops at that seq: events appended
    while it runs are not part of what is being verified, so a write committing during the walk cannot look
    like "events missing at the end" (PostgreSQL, read committed). Given a session factory, the head and
    every ``batch`` events are each read in a short transaction of their own, so a long walk holds no lock a
    writer waits for (on SQLite the factory's sessions must begin deferred transactions; see
    :attr:`waybill.services.Services.read_session_factory`). ``after_chunk`` is told the last seq checked
    after each chunk (progress; tests commit a write there).
    """
    # The head and the highest stored seq in one statement (one snapshot): an appender writes its events and
    # the new head in one transaction, so in any snapshot of a sound chain nothing lies beyond the head.
    top = select(func.max(AuditEvent.seq)).scalar_subquery()
    with _reading(source) as s:
        head_seq, head_hash, top_seq = s.execute(
            select(AuditHead.seq, AuditHead.hash, top).where(AuditHead.id == 1)).one()
    head_hash = bytes(head_hash)
    expected_seq, prev, count, last = 1, bytes(32), 0, 0
    while last < head_seq:
        with _reading(source) as s:
            rows = s.execute(
                select(AuditEvent).where(AuditEvent.seq > last, AuditEvent.seq <= head_seq)
                .order_by(AuditEvent.seq).limit(batch)
            ).scalars().all()
            if not rows:
                break
            for ev in rows:
                count += 1
                if ev.seq != expected_seq:
                    reason = "missing events before this one" if ev.seq > expected_seq else "out of order"
                    return VerifyResult(False, count, head_seq, {"seq": expected_seq, "found_seq": ev.seq,
                                                                "reason": reason})
                if bytes(ev.prev_hash) != prev:
                    return VerifyResult(False, count, head_seq, {"seq": ev.seq, "reason": "broken link"})
                digest = chain_hash(key, prev, ev.seq, ev)
                if not hmac.compare_digest(digest, bytes(ev.hash)):
                    return VerifyResult(False, count, head_seq, {"seq": ev.seq, "reason": "content altered"})
                prev, expected_seq, last = digest, expected_seq + 1, ev.seq
        if after_chunk is not None:
            after_chunk(last)
    if head_seq != last or not hmac.compare_digest(head_hash, prev):
        return VerifyResult(False, count, head_seq, {"seq": last + 1, "reason": "events missing at the end"})
    if top_seq is not None and top_seq > head_seq:  # rows added behind the chain's back (in the head's snapshot)
        return VerifyResult(False, count, head_seq, {"seq": head_seq + 1, "reason": "events after the head"})
    return VerifyResult(True, count, head_seq)
