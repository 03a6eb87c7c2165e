"""Virtual numbers: the built-in pool, bindings, endpoint hashes and the call log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("active")


def upgrade() -> None:
    op.create_table(
        "vn_numbers",
        sa.Column("x_number", sa.String(20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("x_number", name=op.f("pk_vn_numbers")),
    )
    op.create_table(
        "vn_bindings",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("provider_ref", sa.String(64), nullable=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("x_number", sa.String(20), nullable=False),
        sa.Column("extension", sa.String(8), nullable=True),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("a_ct", sa.LargeBinary(), nullable=False),
        sa.Column("b_ct", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vn_bindings")),
    )
    op.create_index(op.f("ix_vn_bindings_provider_ref"), "vn_bindings", ["provider_ref"])
    op.create_index(op.f("ix_vn_bindings_x_number"), "vn_bindings", ["x_number"])
    op.create_index(op.f("ix_vn_bindings_ref"), "vn_bindings", ["ref"])
    # The database enforces: one live binding per (X, extension) and per (provider, ref).
    op.create_index("ix_vn_bindings_live_extension", "vn_bindings", ["x_number", "extension"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_index("ix_vn_bindings_live_ref", "vn_bindings", ["provider", "ref"], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_table(
        "vn_binding_endpoints",
        sa.Column("binding_id", sa.String(32), nullable=False),
        sa.Column("endpoint_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("x_number", sa.String(20), nullable=False),
        sa.Column("role", sa.String(1), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["binding_id"], ["vn_bindings.id"],
                                name=op.f("fk_vn_binding_endpoints_binding_id_vn_bindings")),
        sa.PrimaryKeyConstraint("binding_id", "endpoint_hash", name=op.f("pk_vn_binding_endpoints")),
    )
    op.create_index(op.f("ix_vn_binding_endpoints_expires_at"), "vn_binding_endpoints", ["expires_at"])
    # The allocation rule itself: two live bindings on one X never share an endpoint, even under concurrency.
    op.create_index("ix_vn_binding_endpoints_live", "vn_binding_endpoints", ["x_number", "endpoint_hash"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_table(
        "vn_calls",
        sa.Column("call_id", sa.String(100), nullable=False),
        sa.Column("binding_id", sa.String(32), nullable=True),
        sa.Column("x_number", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("caller_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("release_cause", sa.Integer(), nullable=True),
        sa.Column("routed_at", TS, nullable=True),
        sa.Column("receipt_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["binding_id"], ["vn_bindings.id"], name=op.f("fk_vn_calls_binding_id_vn_bindings")),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_vn_calls")),
    )
    op.create_index(op.f("ix_vn_calls_binding_id"), "vn_calls", ["binding_id"])
    op.create_index(op.f("ix_vn_calls_started_at"), "vn_calls", ["started_at"])


def downgrade() -> None:
    op.drop_table("vn_calls")
    op.drop_table("vn_binding_endpoints")
    op.drop_table("vn_bindings")
    op.drop_table("vn_numbers")
