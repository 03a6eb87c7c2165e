"""The alert sweep: rules that need history, evaluated periodically over the audit log (``volume_baseline``).

The sweep reads the audit log incrementally: for each audit shard, from the place its cursor row holds
(``alert_sweep_cursors``) up to that chain's head, in chunks of :data:`CHUNK` places (in all), one transaction
each. A chunk is one
``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE``: the database counts the chunk's personal-data
accesses per account and Asia/Shanghai day and adds them to ``alert_volume_counts``; Python sees only one row
per (account, day) the chunk touched. The cursor moves in the same transaction, so an event is counted exactly
once whatever crashes. Concurrent sweeps serialise on the cursor row (``FOR UPDATE``; SQLite's write lock).

What counts: audit events of an account (``staff:*``, ``merchant:*``) with a non-empty ``fields`` (the
personal-data fields it touched: a courier's scan or call, an officer's read, a merchant's read of its
shipment...) and outcome ``ok``. Denied, not-found, refused and alert events do not, nor the system's own.

``volume_baseline`` fires for an account and day when the day's accesses reach ``min_events`` and ``factor``
times the median of the account's accesses on its active days among the ``days`` days before (no history:
median 0, so ``min_events`` alone decides; except on the first day the sweep ever counted, when nobody has
history). At most once per account and day (``alerted_at``), whatever the
alert's state: the alert's object is the day (``day:2026-12-01``).

Who the alert names: the swept account. It is raised through :func:`waybill.alerts.store.fire` with a
principal built from the account's audit actor and role, so the ``alert.volume_baseline`` audit event (and the
alert row made from it) name the account the alert is about, exactly as the request-path rules' events name
the account whose request raised them; the event has no request context (the sweep has none) and its
``purpose`` (the alert's ``detail``) says ``sweep`` and the counts. A warning: it never suspends.

Counts older than :data:`KEEP_DAYS` days are pruned by the sweep (the ``days`` threshold is at most 90).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Date, Table, and_, delete, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from waybill.alerts import store
from waybill.alerts.settings import AlertSettings
from waybill.alerts.sweep_models import AlertSweepCursor, VolumeCount
from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import Principal
from waybill.uow import unit_of_work

RULE = "volume_baseline"
CURSOR = "volume_baseline"
TOPIC = "alerts.sweep"
EVERY_S = 300
CHUNK = 250_000  # sequence numbers per transaction: a first sweep over a long log commits as it goes
KEEP_DAYS = 100
SHANGHAI_OFFSET = timedelta(hours=8)  # Asia/Shanghai: UTC+8, no daylight saving time since 1991
ACCOUNT_KINDS = ("staff", "merchant")

_COUNTS = cast(Table, VolumeCount.__table__)
_EVENTS = cast(Table, AuditEvent.__table__)


@dataclass(frozen=True, slots=True)
class Baseline:
    """The rule's thresholds, read from the settings."""

    factor: int
    min_events: int
    days: int

    @classmethod
    def of(cls, alerts: AlertSettings) -> Baseline:
        return cls(factor=alerts.threshold(RULE, "factor"), min_events=alerts.threshold(RULE, "min_events"),
                   days=alerts.threshold(RULE, "days"))


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk: the seq range read (``seq_from`` exclusive, ``seq_to`` inclusive), what it counted and fired."""

    seq_from: int
    seq_to: int
    accesses: int
    account_days: int
    fired: int
    full: bool = False  # some shard had a whole chunk to read: there may be more


@dataclass(frozen=True, slots=True)
class SweepResult:
    """A whole sweep (until caught up with the head), as `waybill alerts sweep` prints it."""

    enabled: bool
    seq_from: int
    seq_to: int
    chunks: int
    accesses: int
    account_days: int
    fired: int
    pruned: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "seq_from": self.seq_from, "seq_to": self.seq_to, "chunks": self.chunks,
                "events_read": self.seq_to - self.seq_from, "accesses": self.accesses,
                "account_days": self.account_days, "fired": self.fired, "pruned": self.pruned,
                "seconds": round(self.seconds, 3)}


def shanghai_day(at: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return (at + SHANGHAI_OFFSET).date() if at.tzinfo is not None else at.date()


def _day_expr(dialect: str) -> Any:
    """The Asia/Shanghai day of ``audit_events.at`` in SQL."""
    if dialect == "postgresql":
        return sql_cast(func.timezone("Asia/Shanghai", _EVENTS.c.at), Date)
    # SQLite stores UTC text ("YYYY-MM-DD HH:MM:SS..."): date() with a modifier reads it.
    return func.date(_EVENTS.c.at, "+8 hours")


def _insert(session: Session) -> Any:
    dialect = session.connection().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert  # the two supported backends


def _cursor(session: Session, now: datetime, name: str = CURSOR) -> AlertSweepCursor:
    """A cursor row, locked (created at 0 on first use)."""
    session.execute(_insert(session)(cast(Table, AlertSweepCursor.__table__))
                    .values(name=name, last_seq=0, swept_at=now).on_conflict_do_nothing(index_elements=["name"]))
    row = session.scalars(select(AlertSweepCursor).where(AlertSweepCursor.name == name).with_for_update()
                          .execution_options(populate_existing=True)).one()
    return row


def _cursor_name(shard: int) -> str:
    # Shard 0 keeps the name of the one cursor of before shards (it was the one chain's, now shard 0's).
    return CURSOR if shard == 0 else f"{CURSOR}:{shard}"


def _accesses_clause() -> Any:
    kinds = or_(*(_EVENTS.c.actor.like(f"{kind}:%") for kind in ACCOUNT_KINDS))
    return and_(_EVENTS.c.outcome == "ok", func.json_array_length(_EVENTS.c.fields) > 0, kinds)


def sweep_chunk(session: Session, baseline: Baseline, *, limit: int = CHUNK,
                now: datetime | None = None) -> ChunkResult:
    """Read the next ``limit`` sequence numbers after the cursor (at most up to the head), add their accesses to
    the daily counts, fire ``volume_baseline`` where a touched day now crosses the baseline; flushes, never
    commits (the caller's unit of work does)."""
    now = now or utcnow()
    # One cursor per audit shard (a place in that shard's chain), each read up to its head: a chain's places
    # are given out under its head row's lock, so nothing can commit behind a cursor.
    cursors = {shard: _cursor(session, now, _cursor_name(shard))
               for shard in session.scalars(select(AuditHead.id).order_by(AuditHead.id))}
    heads = {int(k): int(v) for k, v in session.execute(select(AuditHead.id, AuditHead.seq))}
    # At most ``limit`` places per chunk in all, taken shard after shard.
    ranges: dict[int, tuple[int, int]] = {}
    budget = limit
    for shard, c in cursors.items():
        take = min(heads[shard] - c.last_seq, budget)
        if take > 0:
            ranges[shard] = (c.last_seq, c.last_seq + take)
            budget -= take
    start = sum(c.last_seq for c in cursors.values())
    if not ranges:
        for c in cursors.values():
            c.swept_at = now
        session.flush()
        return ChunkResult(start, start, 0, 0, 0)
    end = start + sum(e - b for b, e in ranges.values())
    full = budget == 0  # the chunk was cut short: there may be more
    in_chunk = or_(*(and_(_EVENTS.c.shard == shard, _EVENTS.c.shard_seq > b, _EVENTS.c.shard_seq <= e)
                     for shard, (b, e) in ranges.items()))
    dialect = session.connection().dialect.name
    day = _day_expr(dialect).label("day")
    counted = (select(_EVENTS.c.actor, day, func.max(_EVENTS.c.role).label("role"),
                      func.count().label("accesses"))
               .where(in_chunk, _accesses_clause())
               .group_by(_EVENTS.c.actor, day))
    upsert = _insert(session)(_COUNTS).from_select(["actor", "day", "role", "accesses"], counted)
    upsert = upsert.on_conflict_do_update(
        index_elements=[_COUNTS.c.actor, _COUNTS.c.day],
        set_={"accesses": _COUNTS.c.accesses + upsert.excluded.accesses, "role": upsert.excluded.role})
    touched = session.execute(upsert.returning(_COUNTS.c.actor, _COUNTS.c.day, _COUNTS.c.role,
                                               _COUNTS.c.accesses, _COUNTS.c.alerted_at)).all()
    # The chunk's own access count (the upsert returns cumulative counts): one more aggregate over the range.
    accesses = int(session.scalar(select(func.count()).select_from(_EVENTS).where(
        in_chunk, _accesses_clause())) or 0) if touched else 0
    first = cursors[0] if 0 in cursors else next(iter(cursors.values()))  # the log's first day is kept on one
    if first.first_day is None and touched:
        first.first_day = min(_as_date(r.day) for r in touched)
    fired = _evaluate(session, baseline, [(r.actor, _as_date(r.day), r.role, int(r.accesses)) for r in touched
                                          if r.alerted_at is None and r.accesses >= baseline.min_events],
                      first.first_day, now)
    for shard, c in cursors.items():
        c.last_seq = ranges.get(shard, (0, c.last_seq))[1]
        c.swept_at = now
    session.flush()
    return ChunkResult(start, end, accesses, len(touched), fired, full)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _evaluate(session: Session, baseline: Baseline, candidates: Sequence[tuple[str, date, str, int]],
              first_day: date | None, now: datetime) -> int:
    """Fire for each (account, day, role, accesses) that reaches ``factor`` x the account's median before it."""
    if not candidates:
        return 0
    actors = sorted({c[0] for c in candidates})
    first = min(c[1] for c in candidates) - timedelta(days=baseline.days)
    last = max(c[1] for c in candidates)
    history: dict[str, dict[date, int]] = defaultdict(dict)
    for part in range(0, len(actors), 500):
        for actor, day, accesses in session.execute(
                select(VolumeCount.actor, VolumeCount.day, VolumeCount.accesses).where(
                    VolumeCount.actor.in_(actors[part:part + 500]), VolumeCount.day >= first,
                    VolumeCount.day < last)):
            history[actor][_as_date(day)] = int(accesses)
    fired = 0
    for actor, day, role, accesses in candidates:
        past = [n for d, n in history[actor].items() if day - timedelta(days=baseline.days) <= d < day]
        if not past and first_day is not None and day <= first_day:
            continue  # the log starts that day: no history for anyone, which says nothing about the account
        median = statistics.median(past) if past else 0
        if accesses < baseline.factor * median:
            continue
        kind, _, ident = actor.partition(":")
        store.fire(session, Principal(kind=kind, id=ident, role=role), RULE, object_type="day",
                   object_id=day.isoformat(), detail=f"sweep accesses={accesses} median={median:g} "
                                                     f"factor={baseline.factor} days={len(past)}")
        session.execute(_COUNTS.update().where(_COUNTS.c.actor == actor, _COUNTS.c.day == day)
                        .values(alerted_at=now))
        fired += 1
    return fired


def prune(session: Session, now: datetime) -> int:
    """Drop counts older than :data:`KEEP_DAYS` (history no threshold can reach)."""
    result = session.execute(delete(VolumeCount).where(VolumeCount.day < shanghai_day(now) - timedelta(days=KEEP_DAYS))
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def run(factory: sessionmaker[Session], alerts: AlertSettings, *, limit: int = CHUNK,
        now: datetime | None = None) -> SweepResult:
    """Sweep until caught up with the audit head, one transaction per chunk; nothing when alerts are disabled."""
    t0 = time.perf_counter()
    if not alerts.enabled:
        return SweepResult(False, 0, 0, 0, 0, 0, 0, 0, 0.0)
    baseline = Baseline.of(alerts)
    chunks: list[ChunkResult] = []
    while True:
        with unit_of_work(factory) as tx:
            chunk = sweep_chunk(tx.session, baseline, limit=limit, now=now)
        chunks.append(chunk)
        if not chunk.full:
            break
    with unit_of_work(factory) as tx:
        pruned = prune(tx.session, now or utcnow())
    return SweepResult(True, chunks[0].seq_from, chunks[-1].seq_to, len(chunks),
                       sum(c.accesses for c in chunks), sum(c.account_days for c in chunks),
                       sum(c.fired for c in chunks), pruned, time.perf_counter() - t0)

