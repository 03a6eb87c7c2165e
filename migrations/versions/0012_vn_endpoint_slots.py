"""Virtual numbers: per-extension endpoint slots, so a courier is not limited by the pool size (AXE).

The live-endpoint unique index becomes (x_number, endpoint_hash, slot): an endpoint reached by X alone has
the empty slot and stays unique per X; the AXE caller (A, who must dial the extension) is unique per X and
extension. Existing rows get the empty slot, which keeps them exactly as exclusive as before.

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None

LIVE = sa.text("active")


def upgrade() -> None:
    with op.batch_alter_table("vn_binding_endpoints") as batch:
        batch.add_column(sa.Column("slot", sa.String(8), nullable=False, server_default=""))
    op.drop_index("ix_vn_binding_endpoints_live", table_name="vn_binding_endpoints")
    op.create_index("ix_vn_binding_endpoints_live", "vn_binding_endpoints", ["x_number", "endpoint_hash", "slot"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_vn_binding_endpoints_live", table_name="vn_binding_endpoints")
    with op.batch_alter_table("vn_binding_endpoints") as batch:
        batch.drop_column("slot")
    op.create_index("ix_vn_binding_endpoints_live", "vn_binding_endpoints", ["x_number", "endpoint_hash"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
