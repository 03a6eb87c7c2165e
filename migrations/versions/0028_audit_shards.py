"""Audit shards: independent hash chains, so appends on different chains never wait for each other.

Each event gets its ``shard`` and its place in that shard's chain (``shard_seq``); ``seq`` stays a position in
the whole log, now drawn from a sequence (PostgreSQL) or the rowid (SQLite) instead of the one head row. The
existing single chain becomes shard 0 unchanged (``shard_seq = seq``, head row 1 becomes row 0), so it verifies
as before; heads of the other shards are made on their first append.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("shard_seq", sa.BigInteger(), nullable=True))
    op.execute("UPDATE audit_events SET shard_seq = seq")
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column("shard_seq", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint("uq_audit_events_shard_shard_seq", ["shard", "shard_seq"])
    op.execute("UPDATE audit_head SET id = 0 WHERE id = 1")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_event_seq OWNED BY audit_events.seq")
        op.execute("SELECT setval('audit_event_seq', COALESCE((SELECT max(seq) FROM audit_events), 0) + 1, false)")
        op.execute("ALTER TABLE audit_events ALTER COLUMN seq SET DEFAULT nextval('audit_event_seq')")


def downgrade() -> None:
    # Only a log that never used more than one shard can go back to one chain.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM audit_events WHERE shard <> 0")).scalar():
        raise RuntimeError("the audit log uses more than one shard; it cannot become one chain again")
    if bind.execute(sa.text("SELECT count(*) FROM audit_head WHERE id <> 0 AND seq <> 0")).scalar():
        raise RuntimeError("the audit log uses more than one shard; it cannot become one chain again")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_events ALTER COLUMN seq DROP DEFAULT")
        op.execute("DROP SEQUENCE audit_event_seq")
    op.execute("DELETE FROM audit_head WHERE id <> 0")
    op.execute("UPDATE audit_head SET id = 1 WHERE id = 0")
    # The global seq of a one-shard log may have gaps (a sequence); the chain position is shard_seq.
    op.execute("UPDATE audit_events SET seq = -shard_seq")
    op.execute("UPDATE audit_events SET seq = shard_seq")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_events_shard_shard_seq", type_="unique")
        batch.drop_column("shard_seq")
        batch.drop_column("shard")
