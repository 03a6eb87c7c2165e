"""Audit checkpoints: the signed, append-only log of every shard's head, and the verifies that confirmed one.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_verifications",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("checkpoint_id", sa.Integer, nullable=False),
        sa.Column("checkpoint_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("from_checkpoint_id", sa.Integer, nullable=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verifications")),
    )
    op.create_index(op.f("ix_audit_verifications_checkpoint_id"), "audit_verifications", ["checkpoint_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_verifications_checkpoint_id"), table_name="audit_verifications")
    op.drop_table("audit_verifications")
    op.drop_table("audit_checkpoints")
