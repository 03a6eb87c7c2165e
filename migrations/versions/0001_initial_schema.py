"""Initial schema: merchants, API keys, data keys, shipments, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False,
                  nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("object_type", sa.String(40), nullable=True),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(120), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action"])
    op.create_index(op.f("ix_audit_events_object_id"), "audit_events", ["object_id"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The chain's genesis: every append locks and advances this one row.
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": bytes(32)}])

    op.create_table(
        "data_keys",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("master_key_id", sa.String(40), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("rewrapped_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
    )
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_api_keys_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_merchant_id"), "api_keys", ["merchant_id"])

    party_columns = []
    for party in ("sender", "recipient"):
        party_columns += [
            sa.Column(f"{party}_name_ct", sa.LargeBinary(), nullable=False),
            sa.Column(f"{party}_phone_ct", sa.LargeBinary(), nullable=False),
            sa.Column(f"{party}_address_ct", sa.LargeBinary(), nullable=False),
            sa.Column(f"{party}_region", sa.JSON(), nullable=False),
            sa.Column(f"{party}_masked", sa.JSON(), nullable=False),
            sa.Column(f"{party}_phone_bidx", sa.BigInteger(), nullable=False),
        ]
    op.create_table(
        "shipments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.String(32), nullable=False),
        sa.Column("merchant_order_id", sa.String(64), nullable=False),
        sa.Column("waybill_no", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("sorting_code", sa.String(32), nullable=False),
        *party_columns,
        sa.Column("weight_g", sa.Integer(), nullable=False),
        sa.Column("description_ct", sa.LargeBinary(), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("request_fingerprint", sa.LargeBinary(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_shipments_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("merchant_id", "idempotency_key",
                            name=op.f("uq_shipments_merchant_id_idempotency_key")),
        sa.UniqueConstraint("merchant_id", "merchant_order_id",
                            name=op.f("uq_shipments_merchant_id_merchant_order_id")),
        sa.UniqueConstraint("waybill_no", name=op.f("uq_shipments_waybill_no")),
    )
    op.create_index("ix_shipments_merchant_id_id", "shipments", ["merchant_id", "id"])
    op.create_index(op.f("ix_shipments_recipient_phone_bidx"), "shipments", ["recipient_phone_bidx"])
    op.create_index(op.f("ix_shipments_sender_phone_bidx"), "shipments", ["sender_phone_bidx"])


def downgrade() -> None:
    op.drop_table("shipments")
    op.drop_table("api_keys")
    op.drop_table("merchants")
    op.drop_table("data_keys")
    op.drop_table("audit_head")
    op.drop_table("audit_events")
