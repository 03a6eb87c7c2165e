"""Merchant key lifecycle: rotation grace (expires_at), last use, test-mode keys and shipments, and when a
merchant was disabled.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch): on SQLite a batch would copy and drop `shipments`, which the foreign keys
    # of existing rows refuse.
    # Set by a rotation: the old key keeps working until then (the grace period).
    op.add_column("api_keys", sa.Column("expires_at", TS, nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", TS, nullable=True))
    # "live" or "test": shipments made with a test key never reach a printer or a courier.
    op.add_column("api_keys", sa.Column("mode", sa.String(8), nullable=False, server_default="live"))
    op.add_column("merchants", sa.Column("disabled_at", TS, nullable=True))
    op.add_column("shipments", sa.Column("test_mode", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("test_mode")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("disabled_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("mode")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
