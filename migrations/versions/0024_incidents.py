"""Oversight: the incident register (incidents, affected subjects, timelines).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title_ct", sa.LargeBinary, nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("scope_actor", sa.String(80), nullable=True),
        sa.Column("scope_from", TS, nullable=True),
        sa.Column("scope_to", TS, nullable=True),
        sa.Column("found_by_ct", sa.LargeBinary, nullable=True),
        sa.Column("location_ct", sa.LargeBinary, nullable=True),
        sa.Column("system_ct", sa.LargeBinary, nullable=True),
        sa.Column("connected_effects_ct", sa.LargeBinary, nullable=True),
        sa.Column("cause_ct", sa.LargeBinary, nullable=True),
        sa.Column("harm_ct", sa.LargeBinary, nullable=True),
        sa.Column("remedies_ct", sa.LargeBinary, nullable=True),
        sa.Column("data_categories", sa.JSON, nullable=False),
        sa.Column("law_enforcement_contacted", sa.Boolean, nullable=False),
        sa.Column("affected_count", sa.Integer, nullable=False),
        sa.Column("report_rule", sa.String(80), nullable=False),
        sa.Column("report_due_at", TS, nullable=True),
        sa.Column("reported_at", TS, nullable=True),
        sa.Column("notified_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_created_at", "incidents", ["created_at"])
    op.create_table(
        "incident_subjects",
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("party", sa.String(16), nullable=False),
        sa.Column("notice", sa.String(16), nullable=True),
        sa.Column("notified_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_incident_subjects_incident_id_incidents")),
        sa.PrimaryKeyConstraint("incident_id", "shipment_id", "party", name=op.f("pk_incident_subjects")),
    )
    op.create_index("ix_incident_subjects_shipment_id", "incident_subjects", ["shipment_id"])
    op.create_table(
        "incident_events",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("note_ct", sa.LargeBinary, nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_incident_events_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_events")),
    )
    op.create_index("ix_incident_events_incident_id_at", "incident_events", ["incident_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_incident_events_incident_id_at", table_name="incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incident_subjects_shipment_id", table_name="incident_subjects")
    op.drop_table("incident_subjects")
    op.drop_index("ix_incidents_created_at", table_name="incidents")
    op.drop_table("incidents")
