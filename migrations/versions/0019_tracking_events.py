"""Movement through the network: tracking events with a per-shipment sequence number.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("previous_status", sa.String(20), nullable=True),
        sa.Column("event", sa.String(32), nullable=True),
        sa.Column("station", sa.String(16), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"],
                                name=op.f("fk_tracking_events_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint("shipment_id", "seq", name=op.f("uq_tracking_events_shipment_id_seq")),
    )
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("event_seq")
    op.drop_table("tracking_events")
