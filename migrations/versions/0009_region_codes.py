"""Regions checked against the administrative divisions (GB/T 2260): stored regions get canonical names and codes.

Before this revision a shipment's city and district were any text with an administrative suffix, stored and
printed in clear (``一三八一二三四五六七八区`` was accepted). Each stored region is resolved against the
packaged divisions list (``waybill/data/regions.csv``, without ``WAYBILL_REGIONS_EXTRA_FILE``): what resolves
is rewritten in its canonical name with its ``*_code`` beside it; the first level that does not resolve, and
those below it, become empty strings, so nothing that is not a division stays in clear. No schema change
(the regions are JSON). The downgrade leaves the rewritten regions as they are: the old code reads them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from waybill.regions import RegionTable

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    table = RegionTable.load()
    shipments = sa.table("shipments", sa.column("id", sa.String), sa.column("sender_region", sa.JSON),
                         sa.column("recipient_region", sa.JSON))
    conn = op.get_bind()
    last = ""
    while True:
        # Keyset batches: a large table is never loaded whole.
        rows = conn.execute(sa.select(shipments.c.id, shipments.c.sender_region, shipments.c.recipient_region)
                            .where(shipments.c.id > last).order_by(shipments.c.id).limit(_BATCH)).all()
        if not rows:
            break
        for sid, sender, recipient in rows:
            conn.execute(sa.update(shipments).where(shipments.c.id == sid).values(
                sender_region=_resolved(table, sender), recipient_region=_resolved(table, recipient)))
        last = rows[-1][0]


def _resolved(table: RegionTable, region: dict[str, str] | None) -> dict[str, str]:
    region = region or {}
    return table.best_effort(*(str(region.get(key) or "") for key in ("province", "city", "district")))


def downgrade() -> None:
    pass
