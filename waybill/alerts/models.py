"""The alert tables (migration ``0023``): alerts, deduplicated per burst, and account suspensions.

- ``alerts``: one row per burst of one rule for one actor (and object): ``count`` says how many times it fired,
  ``first_at``/``last_at`` when. ``dedupe_key`` is unique among open alerts, so concurrent workers add to the same
  row (an upsert) instead of raising a thousand alerts. Alerts hold ids, rule names and counts, never personal
  data; a resolution is an officer's free text and is stored encrypted (``resolution_ct``).
- ``account_suspensions``: a critical alert's automatic response. A suspension with no ``lifted_at`` makes
  every token of the actor fail (``401``) on every worker and node: it is checked in the database on each
  request. ``waybill users enable USERNAME`` lifts it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime

ALERT_STATES = ("open", "resolved")


class Alert(Base):
    """One (deduplicated) alert."""

    __tablename__ = "alerts"
    __table_args__ = (
        # One open alert per burst: the upsert's conflict target (a partial unique index, both backends).
        Index("uq_alerts_dedupe_key_open", "dedupe_key", unique=True,
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
        Index("ix_alerts_status_id", "status", "id"),
        Index("ix_alerts_rule_id", "rule", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    actor: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(120), nullable=True)
    dedupe_key: Mapped[str] = mapped_column(String(300))
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="open")
    resolution_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AccountSuspension(Base):
    """An account suspended by a critical alert, until lifted."""

    __tablename__ = "account_suspensions"
    __table_args__ = (Index("ix_account_suspensions_actor_lifted_at", "actor", "lifted_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    actor: Mapped[str] = mapped_column(String(80))
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"))
    rule: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
