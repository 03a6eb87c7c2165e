"""QR tokens (keyed hashes only) and the shipment's first print time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("printed_at", TS, nullable=True))
    op.create_table(
        "qr_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(20), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("issued_by", sa.String(80), nullable=False),
        sa.Column("issue_reason", sa.String(200), nullable=False),
        sa.Column("is_reprint", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(80), nullable=True),
        sa.Column("revoke_reason", sa.String(40), nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_qr_tokens_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_qr_tokens_token_hash")),
    )
    op.create_index(op.f("ix_qr_tokens_shipment_id"), "qr_tokens", ["shipment_id"])
    # One live token per shipment, enforced by the database (a reprint race cannot leave two).
    op.create_index("ix_qr_tokens_live_shipment", "qr_tokens", ["shipment_id"], unique=True,
                    postgresql_where=sa.text("revoked_at IS NULL"), sqlite_where=sa.text("revoked_at IS NULL"))


def downgrade() -> None:
    op.drop_table("qr_tokens")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("printed_at")
