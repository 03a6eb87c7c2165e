"""The ``sms_messages`` table (migration ``0017``): one row per message, its text only while it is needed.

The phone is stored encrypted (``phone_ct``) and as a keyed hash under its own key-file secret
(``phone_hash``, secret purpose ``sms_phone``) so the built-in outbox can be read back by number. The
rendered text and the template parameters are encrypted (``text_ct``, ``params_ct``); a remote provider's
accepted message has all three ciphertexts erased, leaving metadata only. Messages about a shipment's party
are sealed under that party's key and deleted with the shipment's personal data (:func:`forget`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime, utcnow

STATUSES = ("queued", "sent", "failed", "suppressed")  # suppressed: a canary's number, never sent


class SmsMessage(Base):
    """A message to a person: queued, sent (accepted by the provider) or failed (refused for good)."""

    __tablename__ = "sms_messages"
    __table_args__ = (
        # The built-in outbox read back by number, newest first; and the per-number hourly budget.
        Index("ix_sms_messages_phone_hash_created_at", "phone_hash", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    template: Mapped[str] = mapped_column(String(40))
    phone_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    text_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    params_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    shipment_id: Mapped[str | None] = mapped_column(ForeignKey("shipments.id"), nullable=True, index=True)
    party: Mapped[str | None] = mapped_column(String(16), nullable=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The provider's own id for the message (Aliyun BizId); none for the built-in provider.
    provider_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The failure's type or the provider's error code (an enum-like code, never its message text).
    last_error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
