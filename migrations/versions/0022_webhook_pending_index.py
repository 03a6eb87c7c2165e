"""Webhook deliveries: an index on an endpoint's pending deliveries in creation order, so a delivery run can
gather what else is due for its endpoint without reading the endpoint's history.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_endpoint_id_status_created_at", "webhook_deliveries",
                    ["endpoint_id", "status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_endpoint_id_status_created_at", table_name="webhook_deliveries")
