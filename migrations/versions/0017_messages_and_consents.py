"""Messages to people (``sms_messages``) and notice and consent at collection (shipment columns).

- ``sms_messages``: one row per SMS; the phone encrypted and as a keyed hash (secret ``sms_phone``), the text
  and template parameters encrypted until delivered (a remote provider's are erased then), the delivery's
  metadata (status, sent_at, attempts, last_error_type, the provider's id).
- ``shipments.notice_version`` / ``consent_purposes`` / ``consent_withdrawn``: which privacy notice applied,
  the optional purposes agreed to, and the withdrawals per party. Null on existing shipments.

Revision ID: 0017
Revises: 0015 (the lead re-chains it onto 0016 at merge)
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("template", sa.String(40), nullable=False),
        sa.Column("phone_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("phone_ct", sa.LargeBinary(), nullable=True),
        sa.Column("text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("params_ct", sa.LargeBinary(), nullable=True),
        sa.Column("shipment_id", sa.String(32), nullable=True),
        sa.Column("party", sa.String(16), nullable=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("provider_ref", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error_type", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"], name=op.f("fk_sms_messages_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
    )
    op.create_index("ix_sms_messages_phone_hash_created_at", "sms_messages", ["phone_hash", "created_at"])
    op.create_index(op.f("ix_sms_messages_shipment_id"), "sms_messages", ["shipment_id"])
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("notice_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("consent_purposes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("consent_withdrawn", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("consent_withdrawn")
        batch.drop_column("consent_purposes")
        batch.drop_column("notice_version")
    op.drop_index(op.f("ix_sms_messages_shipment_id"), table_name="sms_messages")
    op.drop_index("ix_sms_messages_phone_hash_created_at", table_name="sms_messages")
    op.drop_table("sms_messages")
