"""Tables of the data subjects' self-service: SMS challenges, subject sessions and subject requests.

Nothing secret or personal in the clear: a challenge keeps a keyed hash of its code, a session a keyed hash
of its token, a request its free text and changes as vault ciphertext under the party's own data key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime


class SubjectChallenge(Base):
    """One ``POST /v1/subject/challenge``: a 6-digit code's keyed hash, for a party only when the pair matched.

    A row is written whether or not the waybill number and the phone matched (no oracle); an unmatched one has
    no shipment and no code that could ever open it.
    """

    __tablename__ = "subject_challenges"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The code, sealed (under the matched party's key; a miss seals a code nobody gets), until the outbox task
    # ``subjects.send_code`` sent it and erased this: every challenge writes the same rows, match or not.
    code_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    shipment_id: Mapped[str | None] = mapped_column(ForeignKey("shipments.id"), nullable=True, index=True)
    party: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set when a right code opened a session: a code is used once.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SubjectToken(Base):
    """A data subject's session: ``id`` is the public part of the token; scoped to one shipment and party."""

    __tablename__ = "subject_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    challenge_id: Mapped[str] = mapped_column(ForeignKey("subject_challenges.id"), index=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    party: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SubjectRequest(Base):
    """A data subject's request (correct, delete, withdraw consent, complaint) and its decision.

    ``status`` ``received`` is a legal hold for retention (the lead's retention code reads this table by name):
    the data a pending request is about is not destroyed under it.
    """

    __tablename__ = "subject_requests"
    __table_args__ = (Index("ix_subject_requests_shipment_status", "shipment_id", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"))
    party: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The working-day rule could only count weekends (no holiday schedule for a year it spans).
    due_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    # The requested changes (JSON) and the subject's text: personal data, sealed under the party's data key.
    changes_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    text_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("staff_users.id"), nullable=True)
    # The officer's reason (shown to the subject): free text, so sealed too.
    reason_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The overdue alert's last state raised ("due_soon" / "overdue"): each raised once per request.
    alerted: Mapped[str | None] = mapped_column(String(16), nullable=True)
