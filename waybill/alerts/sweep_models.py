"""The alert sweep's tables (migration ``0026``): where it stopped reading the audit log, and what it counted.

- ``alert_sweep_cursors``: one row per sweep (``name``; today only ``volume_baseline``): the audit ``seq`` it has
  read up to, and the first day it counted. Each chunk of a sweep moves it in the transaction that stores the
  chunk's counts, so a crash never counts an event twice nor skips one, and the next sweep reads only the events
  after it.
- ``alert_volume_counts``: per account and day (Asia/Shanghai), how many personal-data accesses it made
  (audit events with fields, outcome ``ok``), and when ``volume_baseline`` fired for that day (once a day at
  most). Account ids, dates and counts only: no personal data.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime


class AlertSweepCursor(Base):
    """How far one sweep has read the audit log."""

    __tablename__ = "alert_sweep_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    swept_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The Asia/Shanghai day of the first access it counted: on that day nobody has history yet, because the log
    # (or the sweep) starts there, not because the account is new, so it raises no "no history" alert.
    first_day: Mapped[date | None] = mapped_column(Date, nullable=True)


class VolumeCount(Base):
    """One account's personal-data accesses on one Asia/Shanghai day."""

    __tablename__ = "alert_volume_counts"
    __table_args__ = (Index("ix_alert_volume_counts_day", "day"),)

    actor: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    role: Mapped[str] = mapped_column(String(40))
    accesses: Mapped[int] = mapped_column(Integer)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
