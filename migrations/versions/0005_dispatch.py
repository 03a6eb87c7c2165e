"""Dispatch assignments, and the courier's own phone (encrypted) for virtual-number bindings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("phone_ct", sa.LargeBinary(), nullable=True))
    op.create_table(
        "assignments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("courier_id", sa.String(32), nullable=False),
        sa.Column("dispatcher_id", sa.String(32), nullable=False),
        sa.Column("station", sa.String(32), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("end_reason", sa.String(20), nullable=True),
        sa.Column("binding_id", sa.String(40), nullable=True),
        sa.Column("delivered_method", sa.String(20), nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_assignments_shipment_id_shipments")),
        sa.ForeignKeyConstraint(["courier_id"], ["staff_users.id"], name=op.f("fk_assignments_courier_id_staff_users")),
        sa.ForeignKeyConstraint(["dispatcher_id"], ["staff_users.id"],
                                name=op.f("fk_assignments_dispatcher_id_staff_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
    )
    op.create_index(op.f("ix_assignments_shipment_id"), "assignments", ["shipment_id"])
    op.create_index(op.f("ix_assignments_courier_id"), "assignments", ["courier_id"])
    # One active assignment per shipment, guaranteed by the database.
    op.create_index("ix_assignments_active_shipment", "assignments", ["shipment_id"], unique=True,
                    postgresql_where=sa.text("ended_at IS NULL"), sqlite_where=sa.text("ended_at IS NULL"))


def downgrade() -> None:
    op.drop_table("assignments")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("phone_ct")
