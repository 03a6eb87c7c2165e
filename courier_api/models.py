"""Staff accounts and their access tokens (same declarative ``Base`` as :mod:`waybill.models`).

Nothing secret is stored in the clear: passwords as Argon2id hashes, TOTP secrets encrypted by
the vault (bound to table, column and row), access tokens as keyed hashes.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, text
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
    # A courier's own phone (vault ciphertext): the "A" side of a virtual-number binding.
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Vault ciphertext of the base32 TOTP secret; only for roles that require MFA.
    totp_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Last accepted TOTP time step: a code (or an older one) is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Staff obligations (courier_api/obligations.py, migration 0025): when the confidentiality agreement and the
    # training were last attested (`waybill users create`, `waybill users attest`); a background check's reference
    # (a case number, never personal data) where the role needs one; and where the attestation came from
    # ("create", "attest", or "upgrade": an account from before obligations were recorded).
    confidentiality_attested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    training_attested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    background_check_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    background_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    obligations_source: Mapped[str | None] = mapped_column(String(16), nullable=True)


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


class Assignment(Base):
    """A dispatcher handing a shipment to a courier of the same station. One active per shipment."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_active_shipment", "shipment_id", unique=True,
              postgresql_where=text("ended_at IS NULL"), sqlite_where=text("ended_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    courier_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    dispatcher_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"))
    station: Mapped[str] = mapped_column(String(32))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # The virtual-number binding made for this delivery, released after delivery plus a grace period.
    binding_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    delivered_method: Mapped[str | None] = mapped_column(String(20), nullable=True)


class PersonalDataRequest(Base):
    """A privacy officer's recorded request for one shipment's personal data, with a purpose.

    Full access exists only through such a request (GB/T 35273 7.1 e): it names the fields needed,
    the purpose and a case reference, and opens a short window in which the officer who filed it
    may read exactly those fields. Filing and every read are audited.
    """

    __tablename__ = "personal_data_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    # A case or ticket number (letters, a dash, then letters/digits): never free text.
    reference: Mapped[str] = mapped_column(String(64))
    fields: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reads: Mapped[int] = mapped_column(Integer, default=0)
    # Four eyes: "pending" until another officer approves ("approved"); an emergency filing is approved at
    # once (no approver) and raises a critical alert. Rows from before migration 0011 count as approved.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    approver_id: Mapped[str | None] = mapped_column(ForeignKey("staff_users.id"), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    # The emergency's stated reason: free text that may name people, so vault ciphertext (bound to table,
    # column and row), never in the audit log or the logs.
    reason_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class PrivacyReadCount(Base):
    """How many personal-data reads an officer has made on one day (Asia/Shanghai): the daily read quota.

    A row in the database, not a counter in memory: every worker process and node shares it, a restart does
    not reset it, and it is bumped in the transaction of the read it counts (a rolled-back read counts nothing).
    """

    __tablename__ = "privacy_read_counts"

    officer_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reads: Mapped[int] = mapped_column(Integer, default=0)


class PickupCode(Base):
    """A random 6-digit code given to the recipient by SMS, kept only as a keyed hash bound to this row.

    ``purpose`` ``handover``: the code the recipient tells the courier (sent when the parcel goes out for delivery;
    5 wrong codes set ``locked_at``). ``collection``: the code in a partner's pickup notice (locker, station). A
    resend or a reassignment supersedes the live row (``superseded_at``): only one code of a purpose works at a
    time. ``sent`` is false when no SMS could carry it (a landline, the number's hourly budget spent).
    """

    __tablename__ = "pickup_codes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sent: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Partner(Base):
    """A last-mile partner: a parcel locker operator, a station (驿站), a franchise outlet or an authority.

    No personal data: a business name, its kind and the agreement that lets it receive recipients' details.
    """

    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    agreement_ref: Mapped[str] = mapped_column(String(64))
    # The agreement's last valid day (Asia/Shanghai): from the next day on nothing is handed to the partner.
    agreement_expires: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Disclosure(Base):
    """One disclosure of a party's personal data to a partner: who got which fields, when, on what basis.

    Ids and field names only, never the values: the record outlives the data it describes (retention keeps it).
    """

    __tablename__ = "disclosures"
    # The listing's keyset for one partner (newest first by id): an index range, not a scan (migration 0030).
    __table_args__ = (Index("ix_disclosures_partner_id_id", "partner_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    shipment_id: Mapped[str] = mapped_column(ForeignKey("shipments.id"), index=True)
    party: Mapped[str] = mapped_column(String(16))
    fields: Mapped[list[str]] = mapped_column(JSON)
    basis: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
