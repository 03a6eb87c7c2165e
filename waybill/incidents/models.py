"""The incident register's tables (migration ``0024``): incidents, their affected subjects, their timelines.

- ``incidents``: one row per security incident (or drill). Free text an officer types (title, who found it,
  where, which system, effects on connected systems, cause, possible harm, remedies) may hold personal data by
  accident, so it is stored encrypted with the vault codec (``*_ct``); kinds, severities, timestamps, counts and
  the deadline rule applied are plain.
- ``incident_subjects``: the affected (shipment, party) pairs found from the audit log at creation, and what
  became of each one's notice (``notice``: null until notified; ``sent``, ``unreachable`` for a landline or an
  unusable number, ``destroyed`` when the party's data no longer exists).
- ``incident_events``: the timeline (created, notified, report generated, notes and status changes).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime

KINDS = ("leak", "unauthorised_access", "tamper", "loss", "drill")
SEVERITIES = ("general", "significant", "major", "critical")
STATUSES = ("open", "contained", "reported", "closed")
NOTICES = ("sent", "unreachable", "destroyed")


class Incident(Base):
    """One security incident: what GB/T 35273 10.1 c asks to be recorded, its scope and its deadline."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    title_ct: Mapped[bytes] = mapped_column(LargeBinary)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))
    scope_actor: Mapped[str | None] = mapped_column(String(80), nullable=True)
    scope_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    scope_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    found_by_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    location_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    system_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    connected_effects_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    cause_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    harm_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    remedies_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    data_categories: Mapped[list[str]] = mapped_column(JSON)
    law_enforcement_contacted: Mapped[bool] = mapped_column(Boolean)
    affected_count: Mapped[int] = mapped_column(Integer)
    report_rule: Mapped[str] = mapped_column(String(80))
    report_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IncidentSubject(Base):
    """One affected party of one shipment, and its notice."""

    __tablename__ = "incident_subjects"
    __table_args__ = (Index("ix_incident_subjects_shipment_id", "shipment_id"),)

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    party: Mapped[str] = mapped_column(String(16), primary_key=True)
    notice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IncidentEvent(Base):
    """One entry of an incident's timeline; a note is the officer's free text, encrypted."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_at", "incident_id", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    note_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
