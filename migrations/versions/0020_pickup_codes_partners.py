"""The last mile: pickup codes (keyed hashes only), the partner register and the disclosures made to partners.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pickup_codes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_at", TS, nullable=True),
        sa.Column("superseded_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_pickup_codes_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pickup_codes")),
    )
    op.create_index(op.f("ix_pickup_codes_shipment_id"), "pickup_codes", ["shipment_id"])
    op.create_table(
        "partners",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agreement_ref", sa.String(64), nullable=False),
        sa.Column("agreement_expires", sa.Date(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("partner_id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("party", sa.String(16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_disclosures_partner_id_partners")),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_disclosures_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
    )
    op.create_index(op.f("ix_disclosures_partner_id"), "disclosures", ["partner_id"])
    op.create_index(op.f("ix_disclosures_shipment_id"), "disclosures", ["shipment_id"])


def downgrade() -> None:
    op.drop_table("disclosures")
    op.drop_table("partners")
    op.drop_table("pickup_codes")
