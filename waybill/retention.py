"""Retention runs: destroy what is due, retire period keys, and record it (销毁记录).

A shipment is due ``WAYBILL_RETENTION_DAYS`` after its contract ended, counted in whole days of China Standard
Time (ended on day E: destroyed by the first run on day E + days + 1; with 0 days, by the first run after it
ended), unless a legal hold or an open subject request holds it. A run:

1. removes the due shipments' data keys, ciphertexts, blind-index values, QR tokens, virtual-number rows and
   messages, in short transactions of :data:`CHUNK` shipments (the service keeps answering meanwhile);
2. destroys in the key store every key that ever wrapped their data keys (their end-day keys, and the
   active-period keys they were created under). A key that still wraps surviving data keys (a held
   shipment of the same end day, a parcel still under way) first has those re-wrapped under a fresh key.
   Keys still in use today (today's active-period key, today's end-day key) are destroyed by the next run;
3. retires active-period keys older than ``WAYBILL_ACTIVE_KEY_DAYS`` the same way, and destroys what
   earlier deletions queued (:class:`~waybill.models.PendingKeyDestruction`);
4. writes one destruction record and one audit event (counts and key ids, no personal data);
5. on PostgreSQL, drops whole month partitions of tracking events that are past the retention period and
   de-identified (:func:`waybill.partitions.drop_tracking`), one audit event per partition with its row count.
   Audit events are kept: their partitions are never dropped (README "Big tables").

Runs are serialised (an advisory lock on PostgreSQL, a file lock beside the key store on SQLite) and
idempotent: a run cut short is finished by the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.orm import Session

from waybill import audit, keyfile, partitions
from waybill.crypto.subject_keys import active_key_id, day_of, end_key_day, key_day
from waybill.ids import new_id
from waybill.lifecycle import METHOD_RETENTION, held_clause, queue_key_destruction, scrub_rows
from waybill.models import DestructionRecord, PendingKeyDestruction, Shipment, SubjectKey, utcnow
from waybill.permissions import Permission, Principal
from waybill.retention_dates import cutoff
from waybill.services import Services
from waybill.uow import unit_of_work

CHUNK = 1000
REWRAP_CHUNK = 2000
_LOCK_ID = 0x7761_7962_696C_6C01 & 0x7FFF_FFFF_FFFF_FFFF  # "waybill" + 1: retention runs


@dataclass
class RetentionResult:
    """What a run did (or, with ``dry_run``, would do)."""

    due: int
    destroyed: int = 0
    record_id: str | None = None
    keys_destroyed: list[str] = field(default_factory=list)
    keys_deferred: list[str] = field(default_factory=list)
    rewrapped: int = 0
    partitions_dropped: list[partitions.Dropped] = field(default_factory=list)


def _due_ids(session: Session, now: datetime, days: int) -> list[str]:
    edge = cutoff(now, days)
    clause = Shipment.ended_at <= edge if days == 0 else Shipment.ended_at < edge
    return list(session.scalars(select(Shipment.id).where(
        Shipment.ended_at.is_not(None), clause, Shipment.personal_data_destroyed_at.is_(None),
        ~held_clause()).order_by(Shipment.id)))


@contextmanager
def _run_lock(svc: Services) -> Iterator[None]:
    """One retention run at a time across every process and node."""
    if svc.engine.dialect.name == "postgresql":
        # A session-level lock on a connection of its own, outside any transaction (autocommit).
        with svc.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_ID})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
        return
    path = svc.settings.period_key_file.with_name(svc.settings.period_key_file.name + ".retention")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with keyfile.exclusive(path):  # SQLite means one host: a file lock beside the key store serialises its runs
        yield


def _in_use_today(key_id: str, today: date) -> bool:
    """Keys the service may still wrap new data keys under today: destroying them now would race it."""
    return key_day(key_id) >= today


def _retire(svc: Services, key_id: str, today: date) -> int:
    """Re-wrap the data keys still under ``key_id`` under a fresh key, then destroy it; returns how many moved."""
    ring = svc.subject_keys
    fresh: str | None = None
    moved = 0
    while True:
        with unit_of_work(svc.session_factory) as tx:
            rows = list(tx.session.scalars(select(SubjectKey).where(SubjectKey.wrapping_key_id == key_id)
                                           .order_by(SubjectKey.id).limit(REWRAP_CHUNK)))
            if not rows:
                break
            if fresh is None:  # made only when something survives (else it would be an orphan at once)
                fresh = ring.next_end_key(key_id) if end_key_day(key_id) is not None else active_key_id(today)
            rewrapped = ring.rewrap(rows, fresh)
            if rewrapped:  # one executemany, not one statement (and round trip) per data key
                keys = SubjectKey.__table__
                assert isinstance(keys, Table)
                tx.session.execute(update(keys).where(keys.c.id == bindparam("b_id"))
                                   .values(wrapped=bindparam("b_w"), wrapping_key_id=fresh),
                                   [{"b_id": key, "b_w": wrapped} for key, wrapped in rewrapped])
            # A row whose wrapping key is gone already (another run got there first) opens nothing: it goes.
            gone = {r.id for r in rows} - {key for key, _ in rewrapped}
            if gone:
                tx.session.execute(delete(SubjectKey).where(SubjectKey.id.in_(sorted(gone)))
                                   .execution_options(synchronize_session=False))
            moved += len(rewrapped)
    with unit_of_work(svc.session_factory) as tx:
        # ``created_under`` names the other live key that ever wrapped a row; this one is about to go, so for
        # the rows that name it that is now the key they are wrapped under (the fresh one, or their end day's).
        tx.session.execute(update(SubjectKey).where(SubjectKey.created_under == key_id)
                           .values(created_under=SubjectKey.wrapping_key_id)
                           .execution_options(synchronize_session=False))
    return moved


def _still_due(session: Session, ids: list[str]) -> list[str]:
    """Of a chunk, those still to destroy now: a hold placed or a request filed since the run began wins."""
    stmt = select(Shipment.id).where(Shipment.id.in_(ids), Shipment.personal_data_destroyed_at.is_(None),
                                     ~held_clause())
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Shipment)  # a hold placed now waits for this chunk, or this chunk for it
    return list(session.scalars(stmt))


def run(svc: Services, principal: Principal, *, dry_run: bool = False, now: datetime | None = None) -> RetentionResult:
    """One retention run (see the module docstring); ``dry_run`` only counts what is due."""
    principal.require(Permission.RETENTION_RUN)
    now = now or utcnow()
    today = day_of(now)
    days = svc.settings.retention_days
    with unit_of_work(svc.session_factory) as tx:
        due = _due_ids(tx.session, now, days)
    if dry_run:
        return RetentionResult(due=len(due))
    with _run_lock(svc):
        result = RetentionResult(due=len(due))
        with unit_of_work(svc.session_factory) as tx:
            due = _due_ids(tx.session, now, days)  # again, under the lock
        record_id: str | None = None
        for start in range(0, len(due), CHUNK):
            with unit_of_work(svc.session_factory) as tx:
                session = tx.session
                if session.get_bind().dialect.name == "postgresql":
                    # The chunk's commit does not wait for its WAL flush, so the requests' commits do not queue
                    # behind the run's. Safe: a chunk lost in a crash is due again at the next run, and the keys
                    # it queued are destroyed only later, by commits that do wait (never before a re-wrap).
                    session.execute(text("SET LOCAL synchronous_commit = off"))
                part = _still_due(session, due[start:start + CHUNK])
                if not part:
                    continue
                # The keys that ever wrapped these data keys are queued for destruction in the same commit as
                # the rows go: a run cut short after this chunk leaves them for the next run, never forgotten.
                keys = {k for pair in session.execute(
                    select(SubjectKey.wrapping_key_id, SubjectKey.created_under)
                    .where(SubjectKey.shipment_id.in_(part)).distinct()) for k in pair}
                queue_key_destruction(session, keys, "retention", now)
                scrub_rows(session, part, now)
                if record_id is None:
                    record_id = new_id("dsr")
                    session.add(DestructionRecord(id=record_id, at=now, reason="retention", method=METHOD_RETENTION,
                                                  shipments=0, key_ids=[], actor=principal.actor))
                    session.flush()
                # Counted chunk by chunk: the record of a run cut short still says how many it destroyed.
                session.execute(update(DestructionRecord).where(DestructionRecord.id == record_id)
                                .values(shipments=DestructionRecord.shipments + len(part)))
            result.destroyed += len(part)
        store = svc.subject_keys.store
        existing = set(store.ids())
        with unit_of_work(svc.session_factory) as tx:
            pending = {row.key_id: row.reason for row in tx.session.scalars(select(PendingKeyDestruction))}
            live = set(tx.session.scalars(select(SubjectKey.wrapping_key_id).distinct()))
        stale_active = {k for k in existing if k.startswith("ap-")
                        and key_day(k) < today - timedelta(days=svc.settings.active_key_days)}
        # End-day keys of past days that wrap nothing any more protect only older copies of the database.
        orphans = {k for k in existing if k.startswith("ed-") and key_day(k) < today and k not in live}
        targets = (set(pending) | stale_active | orphans) & existing
        for key_id in sorted(targets):
            if _in_use_today(key_id, today):
                result.keys_deferred.append(key_id)
                continue
            result.rewrapped += _retire(svc, key_id, today)
            result.keys_destroyed.extend(store.destroy([key_id]))
        with unit_of_work(svc.session_factory) as tx:
            session = tx.session
            done = [k for k in pending if k in result.keys_destroyed or k not in existing]
            if done:
                session.execute(delete(PendingKeyDestruction).where(PendingKeyDestruction.key_id.in_(done)))
            queue_key_destruction(session, set(result.keys_deferred), "retention", now)
            if record_id is None and result.keys_destroyed:
                # No shipment was due: the keys an earlier deletion (or a cut-short run) queued are what went.
                reasons = {pending.get(k) for k in result.keys_destroyed}
                record_id = new_id("dsr")
                session.add(DestructionRecord(
                    id=record_id, at=now, reason="subject_request" if "subject_request" in reasons else "retention",
                    method=METHOD_RETENTION, shipments=0, key_ids=[], actor=principal.actor))
                session.flush()
            if record_id is not None:
                session.execute(update(DestructionRecord).where(DestructionRecord.id == record_id)
                                .values(key_ids=sorted(result.keys_destroyed)))
            result.record_id = record_id
            audit.record(session, principal, "retention.run", object_type="destruction_record",
                         object_id=record_id,
                         purpose=f"destroyed={result.destroyed} keys={len(result.keys_destroyed)} "
                                 f"deferred={len(result.keys_deferred)}")
        with unit_of_work(svc.session_factory) as tx:
            # Whole months of de-identified tracking history, past retention: a detach and a drop, no row deletes.
            result.partitions_dropped = partitions.drop_tracking(tx.session.connection(), cutoff(now, days))
            for dropped in result.partitions_dropped:
                audit.record(tx.session, principal, "retention.partition_drop", object_type="partition",
                             object_id=dropped.name, purpose=f"rows={dropped.rows}")
    return result
