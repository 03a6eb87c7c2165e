"""The audit log: every read or write of personal data, and every denied attempt.

Domain code calls :func:`record`; the events are appended to the hash chains when the session
commits (a ``before_commit`` hook), so they are written in the same transaction as the access
they describe and a chain's lock is held only for the append itself. There are ``WAYBILL_AUDIT_SHARDS``
independent chains (:mod:`waybill.audit.chain`): an event joins its object's chain, else its actor's, so
appends to different chains never wait for each other. Events marked
``durable`` (denied attempts, failures) are written again in their own transaction when the
request's transaction is rolled back, so a refused attempt leaves a trace too.

Each event's hash is ``HMAC(audit key, previous hash || canonical event)``; keyed, so someone
with write access to the database cannot recompute a chain after editing it. :mod:`waybill.audit.verify`
walks the chains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Connection, Integer, LargeBinary, Table, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from waybill.audit.chain import GENESIS, chain_hash, shard_of
from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import Principal

_PENDING = "audit_pending"
_APPENDED = "audit_appended"
KEY_INFO = "audit_key"
CONTEXT_INFO = "audit_context"
OBSERVER_INFO = "audit_observer"
SINK_INFO = "audit_alert_sink"
SHARDS_INFO = "audit_shards"

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


# The append's statements, built once: building and cache-keying them per request cost more CPU
# than the rest of the append. Parameter names never equal a column name of either table, so
# executing with a parameter dict cannot add columns to the statements (nor to the CTE's UPDATE).
# (The mapped classes' __table__ is typed as a FromClause; it is the Table.)
_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
_RESERVE = (update(_HEAD).where(_HEAD.c.id == bindparam("head_shard", type_=Integer))
            .values(seq=_HEAD.c.seq + bindparam("n_events", type_=BigInteger))
            .returning(_HEAD.c.seq, _HEAD.c.hash))
_SET_TIP = (update(_HEAD).where(_HEAD.c.id == bindparam("tip_shard", type_=Integer))
            .values(hash=bindparam("tip_hash", type_=LargeBinary)))
_ROW_COLUMNS = [c for c in _EVENTS.c if c.name != "seq"]  # seq: the sequence's (PostgreSQL) or the rowid (SQLite)
# One event plus the new tip in one statement (a data-modifying CTE; PostgreSQL only).
_APPEND_ONE = (insert(_EVENTS).values({c.name: bindparam(f"ev_{c.name}", type_=c.type) for c in _ROW_COLUMNS})
               .add_cte(_SET_TIP.cte("new_tip")))


def _reserve(conn: Connection, shard: int, n: int) -> tuple[int, bytes]:
    """Lock ``shard``'s head row, reserve ``n`` places in its chain; the last place and the tip's hash before.

    A shard's head row is made on its first append (any number of processes may race to make it).
    """
    row = conn.execute(_RESERVE, {"head_shard": shard, "n_events": n}).first()
    if row is None:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(_HEAD).values(id=shard, seq=0, hash=GENESIS).on_conflict_do_nothing())
        row = conn.execute(_RESERVE, {"head_shard": shard, "n_events": n}).one()
    return int(row[0]), bytes(row[1])


def _append(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    key: bytes = session.info[KEY_INFO]
    shards: int = session.info.get(SHARDS_INFO, 1)
    # Write the transaction's own changes first, so the head rows are always the last locks taken.
    session.flush()
    sink: AlertSink | None = session.info.get(SINK_INFO)
    if sink is not None and any(ev.action.startswith("alert.") for ev in pending):
        pending.extend(sink(session, pending))  # the alert rows join this transaction, before the heads' locks
    by_shard: dict[int, list[tuple[int, PendingEvent]]] = {}
    for i, ev in enumerate(pending):
        by_shard.setdefault(shard_of(ev.object_id, ev.actor, shards), []).append((i, ev))
    conn = session.connection()
    rows: list[dict[str, Any]] = [{} for _ in pending]  # in the order recorded: the log's seq follows it
    tips: list[dict[str, Any]] = []
    # Heads are locked in shard order, so two transactions touching the same shards cannot deadlock. One
    # statement per shard locks its head row (PostgreSQL; SQLite is serialised already by BEGIN IMMEDIATE),
    # reserves the places and reads the tip's hash. Core, not the ORM: a head cached in this session must never
    # be trusted.
    for shard in sorted(by_shard):
        events = by_shard[shard]
        last, prev = _reserve(conn, shard, len(events))
        seq = last - len(events)
        for i, ev in events:
            seq += 1
            digest = chain_hash(key, prev, seq, ev, shard)
            rows[i] = {
                "shard": shard, "shard_seq": seq, "at": ev.at, "actor": ev.actor, "role": ev.role,
                "action": ev.action, "object_type": ev.object_type, "object_id": ev.object_id,
                "purpose": ev.purpose, "fields": ev.fields, "outcome": ev.outcome, "client_addr": ev.client_addr,
                "request_id": ev.request_id, "prev_hash": prev, "hash": digest,
            }
            prev = digest
        tips.append({"tip_shard": shard, "tip_hash": prev})
    session.info.setdefault(_APPENDED, []).extend((ev.action, ev.outcome) for ev in pending)
    if conn.dialect.name == "postgresql" and len(rows) == 1:
        # The usual case, one event: the event and the new tip in one round trip, so the head row's
        # lock, which that shard's appenders wait for, is held one round trip less.
        conn.execute(_APPEND_ONE, {**{f"ev_{k}": v for k, v in rows[0].items()}, **tips[0]})
    else:
        conn.execute(insert(_EVENTS), rows)
        conn.execute(_SET_TIP, tips)


def install(factory: sessionmaker[Session], audit_key: bytes, observer: AppendObserver | None = None,
            alert_sink: AlertSink | None = None, shards: int = 1) -> None:
    """Give sessions from ``factory`` the chain key, the number of shards and the append-on-commit hook (and an
    observer of appends, and the alert store's sink)."""
    info = factory.kw.setdefault("info", {})
    info[KEY_INFO] = audit_key
    info[SHARDS_INFO] = shards
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


# Re-exported: callers use ``audit.verify`` (its own module: it is the larger half).
from waybill.audit.verify import VerifyResult, VerifySource, verify  # noqa: E402

__all__ = ["VerifyResult", "VerifySource", "verify", "chain_hash", "shard_of"]
