"""The webhook tables (migration ``0021``): merchants' endpoints, one delivery per (endpoint, event), attempts.

- ``webhook_endpoints``: a merchant's URL and its signing secret, encrypted by the vault codec (table
  ``webhook_endpoints``, column ``secret``; the secret is needed in the clear to sign, so it cannot be a hash).
  After a rotation the previous secret stays (``previous_secret_ct``) until ``previous_expires_at``. A removed
  endpoint keeps its row (``deleted_at``, the ciphertexts erased) so its delivery log still has an owner; one that
  answered ``410 Gone`` is ``disabled_at``.
- ``webhook_deliveries``: one status change to one endpoint. ``event_id`` (the tracking event's id) is the
  ``webhook-id`` and ``body`` the exact bytes sent on every attempt, so a redelivery never differs in content.
  Bodies hold ids, statuses and times only, never personal data.
- ``webhook_attempts``: every attempt (the merchant's delivery log): when, the status code (none when no
  answer came), ok, and an error code (``timeout``, ``connect``, ``blocked_address``, ``redirect``...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime, utcnow

DELIVERY_STATES = ("pending", "succeeded", "failed", "cancelled")


class WebhookEndpoint(Base):
    """A merchant's webhook URL, the events it wants, and its (encrypted) signing secret(s)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_merchant_id_id", "merchant_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]] = mapped_column(JSON)
    secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    previous_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookDelivery(Base):
    """One event for one endpoint: pending until an attempt succeeds, the retries give up, or it is cancelled."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        # Per-shipment order per endpoint: the pending predecessor and the next successor are found here.
        Index("ix_webhook_deliveries_endpoint_id_shipment_id_seq", "endpoint_id", "shipment_id", "seq"),
        # What else is due for an endpoint, oldest first: a run fills its batch from here (migration 0022).
        Index("ix_webhook_deliveries_endpoint_id_status_created_at", "endpoint_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    shipment_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # No attempt before this time: one is in flight (its lease: the request is not answered yet), or a failed
    # attempt's retry wait. A duplicate run of the task before then only checks again at that time.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, as the merchant's delivery log shows it."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_id_id", "endpoint_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(32), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
