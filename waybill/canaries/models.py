"""The ``canaries`` table (migration ``0025``): which shipments are canaries, kept apart from the shipment.

Never a column of ``shipments`` (a view, a serialiser or a report that reads the row could leak it): a row here
keyed by the shipment's id, the internal merchant it was made for and the station it was planted at. Nothing in the
API reads this table; :mod:`waybill.canaries.watch` checks it on every path that opens a shipment's personal data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime


class Canary(Base):
    """A canary shipment."""

    __tablename__ = "canaries"

    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    station: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
