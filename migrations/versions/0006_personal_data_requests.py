"""Privacy officers' recorded requests for personal data.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "personal_data_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("officer_id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("reads", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["staff_users.id"],
                                name=op.f("fk_personal_data_requests_officer_id_staff_users")),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"],
                                name=op.f("fk_personal_data_requests_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_data_requests")),
    )
    op.create_index(op.f("ix_personal_data_requests_officer_id"), "personal_data_requests", ["officer_id"])
    op.create_index(op.f("ix_personal_data_requests_shipment_id"), "personal_data_requests", ["shipment_id"])


def downgrade() -> None:
    op.drop_table("personal_data_requests")
