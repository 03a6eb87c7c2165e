"""Shipments carry their piece count and the 集包地 (consolidation point) routed at creation.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        # Existing shipments are single-piece (the API had no way to say otherwise).
        batch.add_column(sa.Column("pieces", sa.Integer(), nullable=False, server_default="1"))
        # Null for shipments routed before the routing table named consolidation points: labels then
        # route them again at print time.
        batch.add_column(sa.Column("consolidation", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("consolidation")
        batch.drop_column("pieces")
