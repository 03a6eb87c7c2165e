"""The audit checkpoint log's tables (migration ``0029``); see :mod:`waybill.audit.checkpoints`.

- ``audit_checkpoints``: append-only, one row per signed checkpoint: ``body`` is the exact signed text (every
  shard's head, the previous checkpoint's hash), ``signature`` its Ed25519 signature, ``hash`` its SHA-256 (what the
  next checkpoint names as ``prev``). Nothing here is personal data.
- ``audit_verifications``: append-only, one row per verify that confirmed a checkpoint (every chain sound up to
  it), signed with the same key, so an incremental verify may start there and a forged confirmation is refused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from waybill.models import Base, UTCDateTime


class AuditCheckpoint(Base):
    """One signed checkpoint of every shard's head."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_id: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditVerification(Base):
    """A verify's signed statement that every chain was sound up to checkpoint ``checkpoint_id``."""

    __tablename__ = "audit_verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    checkpoint_id: Mapped[int] = mapped_column(Integer, index=True)
    checkpoint_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The confirmed checkpoint this verify started from (None: a full verify from each chain's first event).
    from_checkpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    events: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
