"""Data subjects' self-service: SMS challenges, subject sessions, subject requests.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_challenges",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("code_ct", sa.LargeBinary(), nullable=True),
        sa.Column("shipment_id", sa.String(32), nullable=True),
        sa.Column("party", sa.String(16), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"],
                                name=op.f("fk_subject_challenges_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_challenges")),
    )
    op.create_index(op.f("ix_subject_challenges_shipment_id"), "subject_challenges", ["shipment_id"])
    op.create_table(
        "subject_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("challenge_id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("party", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["challenge_id"], ["subject_challenges.id"],
                                name=op.f("fk_subject_tokens_challenge_id_subject_challenges")),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"],
                                name=op.f("fk_subject_tokens_shipment_id_shipments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_tokens")),
    )
    op.create_index(op.f("ix_subject_tokens_challenge_id"), "subject_tokens", ["challenge_id"])
    op.create_index(op.f("ix_subject_tokens_shipment_id"), "subject_tokens", ["shipment_id"])
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("party", sa.String(16), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("due_fallback", sa.Boolean(), nullable=False),
        sa.Column("changes_ct", sa.LargeBinary(), nullable=True),
        sa.Column("text_ct", sa.LargeBinary(), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decided_by", sa.String(32), nullable=True),
        sa.Column("reason_ct", sa.LargeBinary(), nullable=True),
        sa.Column("alerted", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipments.id"],
                                name=op.f("fk_subject_requests_shipment_id_shipments")),
        sa.ForeignKeyConstraint(["decided_by"], ["staff_users.id"],
                                name=op.f("fk_subject_requests_decided_by_staff_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_requests")),
    )
    op.create_index(op.f("ix_subject_requests_due_at"), "subject_requests", ["due_at"])
    op.create_index("ix_subject_requests_shipment_status", "subject_requests", ["shipment_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_subject_requests_shipment_status", table_name="subject_requests")
    op.drop_index(op.f("ix_subject_requests_due_at"), table_name="subject_requests")
    op.drop_table("subject_requests")
    op.drop_index(op.f("ix_subject_tokens_shipment_id"), table_name="subject_tokens")
    op.drop_index(op.f("ix_subject_tokens_challenge_id"), table_name="subject_tokens")
    op.drop_table("subject_tokens")
    op.drop_index(op.f("ix_subject_challenges_shipment_id"), table_name="subject_challenges")
    op.drop_table("subject_challenges")
