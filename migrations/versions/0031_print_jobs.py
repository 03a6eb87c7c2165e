"""Print jobs: a row per ``POST /v1/print-jobs`` with its progress (labels whose tokens committed), and the job
that issued each QR token, so a job retried with the same ``Idempotency-Key`` reissues nothing.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "print_jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("request_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("issued", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reprint_reason", sa.String(40), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_print_jobs"),
        sa.UniqueConstraint("actor", "idempotency_key", name="uq_print_jobs_actor_idempotency_key"),
    )
    with op.batch_alter_table("qr_tokens") as batch:
        batch.add_column(sa.Column("print_job_id", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_qr_tokens_print_job_id_print_jobs", "print_jobs", ["print_job_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("qr_tokens") as batch:
        batch.drop_constraint("fk_qr_tokens_print_job_id_print_jobs", type_="foreignkey")
        batch.drop_column("print_job_id")
    op.drop_table("print_jobs")
