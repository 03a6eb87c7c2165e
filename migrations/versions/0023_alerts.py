"""Oversight: the alert store (deduplicated per burst) and account suspensions by critical alerts.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("object_type", sa.String(40), nullable=True),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(120), nullable=True),
        sa.Column("dedupe_key", sa.String(300), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("resolution_ct", sa.LargeBinary, nullable=True),
        sa.Column("resolved_by", sa.String(80), nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("uq_alerts_dedupe_key_open", "alerts", ["dedupe_key"], unique=True,
                    postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
    op.create_index("ix_alerts_status_id", "alerts", ["status", "id"])
    op.create_index("ix_alerts_rule_id", "alerts", ["rule", "id"])
    op.create_table(
        "account_suspensions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("lifted_at", TS, nullable=True),
        sa.Column("lifted_by", sa.String(80), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_account_suspensions_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_suspensions")),
    )
    op.create_index("ix_account_suspensions_actor_lifted_at", "account_suspensions", ["actor", "lifted_at"])


def downgrade() -> None:
    op.drop_index("ix_account_suspensions_actor_lifted_at", table_name="account_suspensions")
    op.drop_table("account_suspensions")
    op.drop_index("ix_alerts_rule_id", table_name="alerts")
    op.drop_index("ix_alerts_status_id", table_name="alerts")
    op.drop_index("uq_alerts_dedupe_key_open", table_name="alerts")
    op.drop_table("alerts")
