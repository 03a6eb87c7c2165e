"""Virtual numbers: per-extension endpoint slots (AXE), and the key version of endpoint and caller hashes.

The live-endpoint unique index becomes (x_number, endpoint_hash, slot): an endpoint reached by X alone has
the empty slot and stays unique per X; the AXE caller (A, who must dial the extension) is unique per X and
extension. Existing rows get the empty slot, which keeps them exactly as exclusive as before.

``key_version`` (endpoint and caller hashes): 1 for rows keyed from the blind-index secret, 2 for the key
file's own ``phone_hash`` secret. Migrations do not read the key file, so ``waybill init`` (which every
start runs) re-keys version-1 rows afterwards (``upgrade_legacy_hashes``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LIVE = sa.text("active")


def upgrade() -> None:
    with op.batch_alter_table("vn_binding_endpoints") as batch:
        batch.add_column(sa.Column("slot", sa.String(8), nullable=False, server_default=""))
        # Existing hashes were keyed from the blind-index secret (version 1); `waybill init` re-keys them.
        batch.add_column(sa.Column("key_version", sa.SmallInteger(), nullable=False, server_default=sa.text("1")))
    with op.batch_alter_table("vn_calls") as batch:
        batch.add_column(sa.Column("key_version", sa.SmallInteger(), nullable=False, server_default=sa.text("1")))
    op.drop_index("ix_vn_binding_endpoints_live", table_name="vn_binding_endpoints")
    op.create_index("ix_vn_binding_endpoints_live", "vn_binding_endpoints", ["x_number", "endpoint_hash", "slot"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_vn_binding_endpoints_live", table_name="vn_binding_endpoints")
    with op.batch_alter_table("vn_calls") as batch:
        batch.drop_column("key_version")
    with op.batch_alter_table("vn_binding_endpoints") as batch:
        batch.drop_column("slot")
        batch.drop_column("key_version")
    op.create_index("ix_vn_binding_endpoints_live", "vn_binding_endpoints", ["x_number", "endpoint_hash"],
                    unique=True, postgresql_where=LIVE, sqlite_where=LIVE)
