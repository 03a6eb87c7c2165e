"""Shipments record their origin and destination stations; an index for one actor's recent reprints.

Existing rows are filled from what they store: the destination station is the first two segments of the
sorting code (routed at creation); the origin station is the sender's region routed through the packaged
routing table (left null where the province is unknown to it: such a shipment is then in scope of the
destination's sorters only).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BATCH = 1000


def _region(value: Any) -> dict[str, str]:
    if isinstance(value, str):  # SQLite hands JSON back as text through a plain select
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _backfill() -> None:
    from waybill.routing import RoutingTable, UnknownProvince  # the table as packaged with this release

    routing = RoutingTable.load()
    conn = op.get_bind()
    shipments = sa.table("shipments", sa.column("id", sa.String), sa.column("sorting_code", sa.String),
                         sa.column("sender_region", sa.JSON), sa.column("origin_station", sa.String),
                         sa.column("destination_station", sa.String))
    after = ""
    while True:
        rows = conn.execute(sa.select(shipments.c.id, shipments.c.sorting_code, shipments.c.sender_region)
                            .where(shipments.c.id > after).order_by(shipments.c.id).limit(BATCH)).all()
        if not rows:
            return
        for row in rows:
            parts = (row.sorting_code or "").split("-")
            destination = "-".join(parts[:2]) if len(parts) == 3 else None
            region = _region(row.sender_region)
            try:
                route = routing.route(str(region.get("province", "")), str(region.get("city", "")),
                                      str(region.get("district", "")))
                origin: str | None = f"{route.hub}-{route.station}"
            except (UnknownProvince, TypeError):
                origin = None
            conn.execute(sa.update(shipments).where(shipments.c.id == row.id)
                         .values(origin_station=origin, destination_station=destination))
        after = rows[-1].id


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("origin_station", sa.String(16), nullable=True))
        batch.add_column(sa.Column("destination_station", sa.String(16), nullable=True))
    _backfill()
    op.create_index("ix_qr_tokens_reprints_by_actor", "qr_tokens", ["issued_by", "issued_at"],
                    postgresql_where=sa.text("is_reprint"), sqlite_where=sa.text("is_reprint"))


def downgrade() -> None:
    op.drop_index("ix_qr_tokens_reprints_by_actor", table_name="qr_tokens")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("destination_station")
        batch.drop_column("origin_station")
