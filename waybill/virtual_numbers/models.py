"""Tables of the virtual-number providers (migration ``0004``).

Phone numbers of people (the A and B endpoints) are stored only encrypted (``a_ct``, ``b_ct``) and as
full-width keyed hashes (``endpoint_hash``, ``caller_hash``). X numbers belong to the provider, not to a
person, and are stored as they are.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime, utcnow

_LIVE = text("active")


class VnNumber(Base):
    """An X number of the built-in provider's pool."""

    __tablename__ = "vn_numbers"

    x_number: Mapped[str] = mapped_column(String(20), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VnBinding(Base):
    """A binding of two endpoints to an X number (and, in AXE mode, an extension).

    ``active`` is true until the binding is released or found expired; routing also checks
    ``expires_at`` itself, so a row whose flag is stale never routes.
    """

    __tablename__ = "vn_bindings"
    __table_args__ = (
        # One live binding per extension on an X: the extension alone must pick the binding.
        Index("ix_vn_bindings_live_extension", "x_number", "extension", unique=True,
              postgresql_where=_LIVE, sqlite_where=_LIVE),
        # One live binding per provider and ref: binding the same shipment twice cannot race.
        Index("ix_vn_bindings_live_ref", "provider", "ref", unique=True,
              postgresql_where=_LIVE, sqlite_where=_LIVE),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The provider's own id for the binding (Aliyun SubsId); none for the built-in provider.
    provider_ref: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    mode: Mapped[str] = mapped_column(String(8))
    x_number: Mapped[str] = mapped_column(String(20), index=True)
    extension: Mapped[str | None] = mapped_column(String(8), nullable=True)
    ref: Mapped[str] = mapped_column(String(64), index=True)
    a_ct: Mapped[bytes] = mapped_column(LargeBinary)
    b_ct: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class VnBindingEndpoint(Base):
    """One endpoint (A or B) of a binding, as a keyed hash.

    The partial unique index is the allocation rule itself: while active, an endpoint appears at most once
    per X number and ``slot``, so concurrent allocations cannot give one dialled number two destinations.
    ``slot`` is empty for every endpoint that reaches its peer by dialling X alone (both AXB endpoints, the
    AXE call-back endpoint B); the AXE caller A reaches B only by X plus the extension, so A's row carries
    the extension as its slot: one courier may then hold many AXE bindings on one X (migration ``0012``).
    """

    __tablename__ = "vn_binding_endpoints"
    __table_args__ = (
        Index("ix_vn_binding_endpoints_live", "x_number", "endpoint_hash", "slot", unique=True,
              postgresql_where=_LIVE, sqlite_where=_LIVE),
    )

    binding_id: Mapped[str] = mapped_column(ForeignKey("vn_bindings.id"), primary_key=True)
    endpoint_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    x_number: Mapped[str] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(1))  # "a" or "b"
    # "" (X alone routes) or, for the A endpoint of an AXE binding, its extension.
    slot: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # Which key made endpoint_hash (1: the blind-index-derived key of before migration 0012; 2: phone_hash).
    key_version: Mapped[int] = mapped_column(SmallInteger, default=2, server_default=text("1"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A copy of the binding's expiry, so expired rows are deactivated by one indexed UPDATE.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class VnCall(Base):
    """The call log: one row per call id, written when a call is routed and/or its receipt arrives."""

    __tablename__ = "vn_calls"

    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    binding_id: Mapped[str | None] = mapped_column(ForeignKey("vn_bindings.id"), nullable=True, index=True)
    x_number: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))  # "routed" or "out_of_session"
    caller_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    key_version: Mapped[int] = mapped_column(SmallInteger, default=2, server_default=text("1"))  # of caller_hash
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    release_cause: Mapped[int | None] = mapped_column(Integer, nullable=True)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    receipt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
