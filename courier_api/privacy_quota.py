"""The privacy officer's daily read quota, counted in the database.

A counter row per officer and day (:class:`courier_api.models.PrivacyReadCount`), not an in-process limiter:
the quota bounds what one person may read, so it must hold however many worker processes or nodes serve
that person, and survive a restart. The row is bumped by a conditional ``UPDATE`` in the read's own
transaction: concurrent reads serialise on the row (PostgreSQL re-checks the condition after the row lock;
SQLite serialises writers anyway), so the limit is never overshot, and a read that rolls back counts nothing.

The day is Asia/Shanghai's (UTC+8, no daylight saving time): the officers' working day, so the quota does not
reset at 08:00 in the middle of it, as a UTC day would.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from courier_api.models import PrivacyReadCount

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
_COUNTS = cast(Table, PrivacyReadCount.__table__)


def officer_day(now: datetime) -> date:
    """The quota's day for an instant: the calendar day in Asia/Shanghai."""
    return now.astimezone(SHANGHAI).date()


def seconds_until_next_day(now: datetime) -> float:
    """Seconds from ``now`` until the next Asia/Shanghai midnight (the ``Retry-After`` of a refused read)."""
    local = now.astimezone(SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=SHANGHAI)
    return (midnight - local).total_seconds()


class Taken(NamedTuple):
    """A read counted (``wait`` None, ``reads`` today including it) or refused (the seconds until renewal)."""

    wait: float | None
    reads: int


def take_read(session: Session, officer_id: str, limit: int, now: datetime) -> Taken:
    """Count one read of ``officer_id`` today: ``wait`` is ``None`` when it is within ``limit`` (``reads`` is the
    day's count with it), else the seconds until the quota renews (nothing is counted then)."""
    day = officer_day(now)
    dialect = session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert  # the two supported backends
    session.execute(insert(_COUNTS).values(officer_id=officer_id, day=day, reads=0)
                    .on_conflict_do_nothing(index_elements=["officer_id", "day"]))
    bumped = cast("CursorResult[Any]", session.execute(
        update(_COUNTS).where(_COUNTS.c.officer_id == officer_id, _COUNTS.c.day == day, _COUNTS.c.reads < limit)
        .values(reads=_COUNTS.c.reads + 1).returning(_COUNTS.c.reads)))
    reads = bumped.scalar()
    return Taken(None, int(reads)) if reads is not None else Taken(seconds_until_next_day(now), limit)
