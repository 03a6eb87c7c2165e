"""Oversight: the alert sweep's cursor over the audit log and its per-account daily access counts.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_sweep_cursors",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("swept_at", TS, nullable=False),
        sa.Column("first_day", sa.Date, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alert_sweep_cursors")),
    )
    op.create_table(
        "alert_volume_counts",
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("accesses", sa.Integer, nullable=False),
        sa.Column("alerted_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("actor", "day", name=op.f("pk_alert_volume_counts")),
    )
    op.create_index("ix_alert_volume_counts_day", "alert_volume_counts", ["day"])


def downgrade() -> None:
    op.drop_index("ix_alert_volume_counts_day", table_name="alert_volume_counts")
    op.drop_table("alert_volume_counts")
    op.drop_table("alert_sweep_cursors")
