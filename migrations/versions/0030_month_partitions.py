"""Big tables on PostgreSQL: audit events and tracking events partitioned by month of ``at``; keyset indexes.

PostgreSQL: each table becomes a declarative ``PARTITION BY RANGE (at)`` table with one partition per UTC month
(``<table>_pYYYY_MM``) from its oldest row's month to :data:`MONTHS_AHEAD` months after this one, and a DEFAULT
partition (``<table>_pdefault``) so an insert never fails; the service creates further months ahead
(:mod:`waybill.partitions`). The rows are copied into the new table inside the migration's transaction (the
tables are locked meanwhile: the time is that of copying them), then it takes the old name, indexes and
constraints, and ``audit_event_seq`` is owned by its ``seq`` again. No foreign key refers to either table.

A primary key or unique constraint of a partitioned table must contain the partition key, so on PostgreSQL
``pk_audit_events`` is (seq, at), ``uq_audit_events_shard_shard_seq`` (shard, shard_seq, at),
``pk_tracking_events`` (id, at) and ``uq_tracking_events_shipment_id_seq`` (shipment_id, seq, at). What stays
unique by construction: ``seq`` comes from a sequence and tracking ids are random; a shard's ``shard_seq`` is
reserved under its head row's lock and a shipment's tracking ``seq`` by one atomic increment of its row, and
``waybill audit verify`` reports any repeated place in a chain. SQLite keeps the plain tables (one file, one
writer: nothing to partition) and their constraints.

Both backends: the audit listing's filters get keyset indexes ``(action, seq)`` (replacing ``(action)``) and
``(actor, seq)``, and disclosures ``(partner_id, id)`` (replacing ``(partner_id)``), so a deep page of a filtered
listing is an index range, not a scan of everything before it.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3

# table -> (primary key, unique constraint name and columns, other indexes), partitioned form; the plain form
# is the same without the partition key ``at``.
_AUDIT_INDEXES = (("ix_audit_events_at", "at"), ("ix_audit_events_object_id", "object_id"),
                  ("ix_audit_events_action_seq", "action, seq"), ("ix_audit_events_actor_seq", "actor, seq"))


def _months(first: datetime, last: datetime) -> list[datetime]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(datetime(y, m, 1, tzinfo=UTC))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _next_month(start: datetime) -> datetime:
    return datetime(start.year + 1, 1, 1, tzinfo=UTC) if start.month == 12 else \
        datetime(start.year, start.month + 1, 1, tzinfo=UTC)


def _partition(table: str) -> None:
    """Turn ``table`` into a month-partitioned table holding the same rows (PostgreSQL)."""
    bind = op.get_bind()
    oldest = bind.execute(sa.text(f"SELECT min(at) FROM {table}")).scalar()  # noqa: S608  (a fixed table name)
    now = datetime.now(UTC)
    first = min(oldest, now) if oldest is not None else now
    y, m = now.year, now.month + MONTHS_AHEAD
    y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
    op.execute(f"CREATE TABLE {table}_new (LIKE {table} INCLUDING DEFAULTS INCLUDING STORAGE) "
               "PARTITION BY RANGE (at)")
    for start in _months(first.astimezone(UTC), datetime(y, m, 1, tzinfo=UTC)):
        op.execute(f"CREATE TABLE {table}_p{start:%Y_%m} PARTITION OF {table}_new "
                   f"FOR VALUES FROM ('{start.isoformat()}') TO ('{_next_month(start).isoformat()}')")
    op.execute(f"CREATE TABLE {table}_pdefault PARTITION OF {table}_new DEFAULT")
    op.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")  # noqa: S608  (a fixed table name)


def _swap(table: str) -> None:
    """Drop the old ``table`` and give ``<table>_new`` its name (the sequence's owner moves first)."""
    if table == "audit_events":
        op.execute("ALTER SEQUENCE audit_event_seq OWNED BY NONE")  # else dropping the old table drops it
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    if table == "audit_events":
        op.execute("ALTER SEQUENCE audit_event_seq OWNED BY audit_events.seq")


def _audit_constraints(key: str) -> None:
    op.execute(f"ALTER TABLE audit_events ADD CONSTRAINT pk_audit_events PRIMARY KEY (seq{key})")
    op.execute(f"ALTER TABLE audit_events ADD CONSTRAINT uq_audit_events_shard_shard_seq "
               f"UNIQUE (shard, shard_seq{key})")


def _tracking_constraints(key: str) -> None:
    op.execute(f"ALTER TABLE tracking_events ADD CONSTRAINT pk_tracking_events PRIMARY KEY (id{key})")
    op.execute(f"ALTER TABLE tracking_events ADD CONSTRAINT uq_tracking_events_shipment_id_seq "
               f"UNIQUE (shipment_id, seq{key})")
    op.execute("ALTER TABLE tracking_events ADD CONSTRAINT fk_tracking_events_shipment_id_shipments "
               "FOREIGN KEY (shipment_id) REFERENCES shipments (id)")


def _keyset_indexes_up() -> None:
    op.drop_index("ix_disclosures_partner_id", table_name="disclosures")
    op.create_index("ix_disclosures_partner_id_id", "disclosures", ["partner_id", "id"])


def upgrade() -> None:
    _keyset_indexes_up()
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_audit_events_action", table_name="audit_events")
        op.create_index("ix_audit_events_action_seq", "audit_events", ["action", "seq"])
        op.create_index("ix_audit_events_actor_seq", "audit_events", ["actor", "seq"])
        return
    for table in ("audit_events", "tracking_events"):
        _partition(table)
        _swap(table)
    _audit_constraints(", at")
    for name, columns in _AUDIT_INDEXES:
        op.execute(f"CREATE INDEX {name} ON audit_events ({columns})")
    _tracking_constraints(", at")


def downgrade() -> None:
    op.drop_index("ix_disclosures_partner_id_id", table_name="disclosures")
    op.create_index("ix_disclosures_partner_id", "disclosures", ["partner_id"])
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_audit_events_actor_seq", table_name="audit_events")
        op.drop_index("ix_audit_events_action_seq", table_name="audit_events")
        op.create_index("ix_audit_events_action", "audit_events", ["action"])
        return
    for table in ("audit_events", "tracking_events"):
        op.execute(f"CREATE TABLE {table}_new (LIKE {table} INCLUDING DEFAULTS INCLUDING STORAGE)")
        op.execute(f"INSERT INTO {table}_new SELECT * FROM {table}")  # noqa: S608  (a fixed table name)
        _swap(table)  # the partitions go with the partitioned table
    _audit_constraints("")
    for name, columns in (("ix_audit_events_at", "at"), ("ix_audit_events_object_id", "object_id"),
                          ("ix_audit_events_action", "action")):
        op.execute(f"CREATE INDEX {name} ON audit_events ({columns})")
    _tracking_constraints("")
