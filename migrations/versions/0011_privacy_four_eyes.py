"""Four eyes for privacy officers' full access: request status, approver, emergency filings, daily read counts.

Existing requests become ``approved`` (approved_at = created_at, no approver): they were filed under the old
rule, where filing alone opened the window, and their windows (at most a day) are what they were; nothing
that was not readable before becomes readable.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("personal_data_requests") as batch:
        # The defaults fill the existing rows only; they are dropped below (new rows get their values in code).
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="approved"))
        batch.add_column(sa.Column("approver_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("approved_at", TS, nullable=True))
        batch.add_column(sa.Column("emergency", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("reason_ct", sa.LargeBinary(), nullable=True))
        batch.create_foreign_key(op.f("fk_personal_data_requests_approver_id_staff_users"), "staff_users",
                                 ["approver_id"], ["id"])
    op.execute("UPDATE personal_data_requests SET approved_at = created_at")
    with op.batch_alter_table("personal_data_requests") as batch:
        batch.alter_column("status", server_default=None)
        batch.alter_column("emergency", server_default=None)
    op.create_table(
        "privacy_read_counts",
        sa.Column("officer_id", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reads", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["staff_users.id"],
                                name=op.f("fk_privacy_read_counts_officer_id_staff_users")),
        sa.PrimaryKeyConstraint("officer_id", "day", name=op.f("pk_privacy_read_counts")),
    )


def downgrade() -> None:
    op.drop_table("privacy_read_counts")
    with op.batch_alter_table("personal_data_requests") as batch:
        batch.drop_constraint(op.f("fk_personal_data_requests_approver_id_staff_users"), type_="foreignkey")
        batch.drop_column("reason_ct")
        batch.drop_column("emergency")
        batch.drop_column("approved_at")
        batch.drop_column("approver_id")
        batch.drop_column("status")
