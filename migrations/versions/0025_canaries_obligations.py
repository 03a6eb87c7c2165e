"""Oversight: canary shipments (which shipments are canaries, kept apart) and staff obligations.

``canaries``: one row per canary shipment, keyed by its id (never a column of ``shipments``).

``staff_users`` gains when the confidentiality agreement and the training were last attested, a background check's
reference and when it was recorded, and the attestation's source. Accounts that exist at the upgrade are recorded
as attested at the upgrade (source ``upgrade``): refusing every courier personal data the moment the new version
starts would stop deliveries; instead they lapse WAYBILL_TRAINING_VALID_DAYS after the upgrade unless
`waybill users attest` renews them (operators find them by ``obligations_source = 'upgrade'``).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("station", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_canaries_shipment_id_shipments")),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_canaries_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("shipment_id", name=op.f("pk_canaries")),
    )
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("confidentiality_attested_at", TS, nullable=True))
        batch.add_column(sa.Column("training_attested_at", TS, nullable=True))
        batch.add_column(sa.Column("background_check_ref", sa.String(64), nullable=True))
        batch.add_column(sa.Column("background_checked_at", TS, nullable=True))
        batch.add_column(sa.Column("obligations_source", sa.String(16), nullable=True))
    users = sa.table("staff_users", sa.column("confidentiality_attested_at", TS),
                     sa.column("training_attested_at", TS), sa.column("obligations_source", sa.String(16)))
    now = datetime.now(UTC)
    op.execute(users.update().values(confidentiality_attested_at=now, training_attested_at=now,
                                     obligations_source="upgrade"))


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("obligations_source")
        batch.drop_column("background_checked_at")
        batch.drop_column("background_check_ref")
        batch.drop_column("training_attested_at")
        batch.drop_column("confidentiality_attested_at")
    op.drop_table("canaries")
