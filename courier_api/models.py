"""Staff accounts and their access tokens (same declarative ``Base`` as :mod:`waybill.models`).

Nothing secret is stored in the clear: passwords as Argon2id hashes, TOTP secrets encrypted by
the vault (bound to table, column and row), access tokens as keyed hashes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime, utcnow


class StaffUser(Base):
    """A courier, dispatcher, sorter, auditor, privacy officer or administrator."""

    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    # Station code; required for courier, dispatcher and sorter (the station they work at).
    station: Mapped[str | None] = mapped_column(String(32), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Vault ciphertext of the base32 TOTP secret; only for roles that require MFA.
    totp_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Last accepted TOTP time step: a code (or an older one) is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffToken(Base):
    """A short-lived staff access token; ``id`` is the public part used for lookup."""

    __tablename__ = "staff_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
