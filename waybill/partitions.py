"""Month partitions of the big tables on PostgreSQL (declarative partitioning; no ``pg_partman`` needed).

``audit_events`` and ``tracking_events`` are ``PARTITION BY RANGE (at)`` on PostgreSQL (migration 0030): one
partition per UTC month, ``<table>_pYYYY_MM``, and a DEFAULT partition ``<table>_pdefault`` that catches any row
no month partition takes, so an insert never fails. :func:`ensure` keeps :data:`MONTHS_AHEAD` months ahead
(the migration, ``waybill db upgrade``, the daily ``db.partitions`` job and ``waybill db partitions``); a month
whose rows already fell into the default partition is made by moving them out first.

:func:`drop_tracking` is retention's half: a tracking month whose every event is past the retention period and
belongs to a shipment whose personal data is destroyed (and that no legal hold names) is detached and dropped
as a whole, instead of deleting its rows. Audit partitions are never dropped (see README "Big tables").

SQLite keeps plain tables: every function here does nothing there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text

#: The partitioned tables and their partition key.
PARTITIONED: dict[str, str] = {"audit_events": "at", "tracking_events": "at"}
#: Months made ahead of the current one (an insert in them lands in its own month, not the default).
MONTHS_AHEAD = 3
#: A partition change waits this long for the table's lock, then gives up (the next run tries again), so it
#: never queues the service's inserts behind a long transaction.
LOCK_TIMEOUT = "5s"
DEFAULT_SUFFIX = "pdefault"


@dataclass(frozen=True)
class Partition:
    """One partition: its name, and its month's bounds (``None`` for the default partition)."""

    name: str
    lower: datetime | None
    upper: datetime | None
    rows_estimate: int

    @property
    def is_default(self) -> bool:
        return self.lower is None


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(start: datetime, n: int) -> datetime:
    index = start.year * 12 + start.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def month_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y_%m}"


def _bounds(table: str, name: str) -> tuple[datetime | None, datetime | None]:
    """A partition's month from its name; a partition not named as this module names them is refused (its name
    goes into DDL)."""
    if name == f"{table}_{DEFAULT_SUFFIX}":
        return None, None
    found = re.fullmatch(rf"{table}_p([0-9]{{4}})_([0-9]{{2}})", name)
    if found is None:
        raise ValueError(f"partition {name!r} of {table} is not named <table>_pYYYY_MM or <table>_pdefault")
    lower = datetime(int(found.group(1)), int(found.group(2)), 1, tzinfo=UTC)
    return lower, add_months(lower, 1)


def is_partitioned(conn: Connection, table: str) -> bool:
    """Whether ``table`` is a partitioned table here (never on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": table}).first())


def partitioned_tables(conn: Connection) -> set[str]:
    """The tables of :data:`PARTITIONED` that are partitioned in this database."""
    return {t for t in PARTITIONED if is_partitioned(conn, t)}


def partitions(conn: Connection, table: str) -> list[Partition]:
    """``table``'s partitions, oldest month first, the default last; row counts are the planner's estimates
    (``reltuples``: no ``count(*)`` of a big table)."""
    if not is_partitioned(conn, table):
        return []
    rows = conn.execute(text(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t AND p.relnamespace = current_schema()::regnamespace"), {"t": table}).all()
    found = [Partition(str(name), *_bounds(table, str(name)), int(n)) for name, n in rows]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: p.lower or far)


def _literal(at: datetime) -> str:
    # Bounds are DDL (no bind parameters there); always a datetime this module made, never input.
    return f"'{at.isoformat()}'"


def _create_month(conn: Connection, table: str, start: datetime) -> None:
    name, default = month_name(table, start), f"{table}_{DEFAULT_SUFFIX}"
    lo, hi = _literal(start), _literal(add_months(start, 1))
    key = PARTITIONED[table]
    # Every name and bound in these statements is made here from PARTITIONED and a datetime, never from input.
    stray = conn.execute(text(f"SELECT 1 FROM {default} WHERE {key} >= {lo} AND {key} < {hi} LIMIT 1")  # noqa: S608
                         ).first()
    if stray is None:
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"))
        return
    # Rows of this month are in the default partition already (no month was made in time): the month is made
    # beside the table, the rows move into it, and it is attached (which checks the default holds none of them).
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING STORAGE)"))
    conn.execute(text(f"INSERT INTO {name} SELECT * FROM {default} WHERE {key} >= {lo} AND {key} < {hi}"))  # noqa: S608
    conn.execute(text(f"DELETE FROM {default} WHERE {key} >= {lo} AND {key} < {hi}"))  # noqa: S608
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"))


def ensure(conn: Connection, now: datetime, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Make the default partition and every month from ``now``'s to ``months_ahead`` after it that is missing,
    in the caller's transaction; returns the partitions made (none on SQLite)."""
    made: list[str] = []
    for table in sorted(partitioned_tables(conn)):
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        existing = {p.name for p in partitions(conn, table)}
        default = f"{table}_{DEFAULT_SUFFIX}"
        if default not in existing:
            conn.execute(text(f"CREATE TABLE {default} PARTITION OF {table} DEFAULT"))
            made.append(default)
        first = month_start(now)
        for i in range(months_ahead + 1):
            start = add_months(first, i)
            if month_name(table, start) not in existing:
                _create_month(conn, table, start)
                made.append(month_name(table, start))
    return made


@dataclass(frozen=True)
class Dropped:
    """A dropped partition and how many rows it held."""

    name: str
    rows: int


def droppable_tracking(conn: Connection, before: datetime) -> list[Partition]:
    """Tracking months wholly before ``before`` (the retention cutoff) whose every event belongs to a shipment
    whose personal data is destroyed and that no unreleased legal hold names: de-identified, past retention."""
    out: list[Partition] = []
    for part in partitions(conn, "tracking_events"):
        if part.upper is None or part.upper > before:
            continue
        # part.name is a partition of the catalog named as month_name makes them (checked by _bounds).
        live = conn.execute(text(
            f"SELECT 1 FROM {part.name} t JOIN shipments s ON s.id = t.shipment_id "  # noqa: S608
            "WHERE s.personal_data_destroyed_at IS NULL OR EXISTS (SELECT 1 FROM legal_hold_shipments hs "
            "JOIN legal_holds h ON h.id = hs.hold_id WHERE hs.shipment_id = s.id AND h.released_at IS NULL) "
            "LIMIT 1")).first()
        if live is None:
            out.append(part)
    return out


def drop_tracking(conn: Connection, before: datetime) -> list[Dropped]:
    """Detach and drop the partitions :func:`droppable_tracking` names, in the caller's transaction.

    The check reads a whole old month and takes no table lock (holding one meanwhile would stop every status
    change for that long); the detach then locks the table for a moment, within :data:`LOCK_TIMEOUT`. An event
    written between the two would have to carry a time in a month that ended before the retention cutoff (never
    later than now), and every tracking event carries the server's time of its step: none lands there.
    """
    candidates = droppable_tracking(conn, before)
    if not candidates:
        return []  # the usual day: nothing to drop, and no lock taken
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    dropped: list[Dropped] = []
    for part in candidates:
        rows = int(conn.execute(text(f"SELECT count(*) FROM {part.name}")).scalar_one())  # noqa: S608
        conn.execute(text(f"ALTER TABLE tracking_events DETACH PARTITION {part.name}"))
        conn.execute(text(f"DROP TABLE {part.name}"))
        dropped.append(Dropped(part.name, rows))
    return dropped
